"""Run the ``layershare`` command as ``python -m layershare``."""

from layershare.cli import main

raise SystemExit(main())
