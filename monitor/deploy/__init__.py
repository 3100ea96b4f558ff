"""`amplify-monitor deploy` and `wait`: put a build on a branch and follow its job to the end.

The package owns the CI-facing half of the tool: archive, upload, start, follow, report, exit
code. It reaches Amplify only through `monitor.amplify`, like the daemon.
"""

from monitor.deploy.command import run_deploy, run_wait

__all__ = ["run_deploy", "run_wait"]
