"""`python -m crawler`: hand over to the command line."""

from .cli import main

raise SystemExit(main())
