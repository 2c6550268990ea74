"""The command line and what it offers besides `run`: the one-page tools (fetch, parse,
shell), stats and report, the live display, the demo shop and the bench."""
