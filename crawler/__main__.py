"""`python -m crawler`: hand over to the command line."""

from .tools.cli import main

raise SystemExit(main())
