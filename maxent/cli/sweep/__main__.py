"""``python -m maxent.cli.sweep CONFIG.toml [flags]``: the same as ``maxent sweep``."""

from maxent.cli.sweep.command import sweep_main

raise SystemExit(sweep_main())
