"""``python -m slack_logging`` runs the CLI."""

from slack_logging.cli import main

raise SystemExit(main())
