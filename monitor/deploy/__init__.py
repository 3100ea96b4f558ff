"""`amplify-monitor deploy` and `wait`: put a build on a branch and follow its job to the end.

The package owns the CI-facing half of the tool: archive, upload, start, follow, report, exit
code. It reaches Amplify only through `monitor.amplify`, like the daemon. Nothing is imported
here: `monitor.deploy.args` (argument parsing) is loaded by every command line, the rest only
when `deploy` or `wait` runs.
"""
