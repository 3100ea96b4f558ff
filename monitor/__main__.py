"""`python -m monitor` is the `amplify-monitor` command."""

from monitor.cli import main

raise SystemExit(main())
