"""`python -m scopegate` is the same as the `scopegate` console script."""

from scopegate.cli import main

raise SystemExit(main())
