"""CI: the installed package, as users get it. Imports every module of the `crawler` this
interpreter finds, and fails if that is the checkout's (argv[1]) rather than an installed one."""

import importlib
import pkgutil
import sys
from pathlib import Path

import crawler

checkout = Path(sys.argv[1]).resolve()
where = Path(crawler.__file__).resolve().parent
print(f"crawler {crawler.__version__} imported from {where}")
if where.is_relative_to(checkout):
    sys.exit(f"error: that is the checkout ({checkout}), not the installed package")
modules = [m.name for m in pkgutil.walk_packages(crawler.__path__, "crawler.")]
for name in modules:
    if name != "crawler.__main__":  # it runs the command line
        importlib.import_module(name)
if not (where / "py.typed").is_file():
    sys.exit("error: the installed package has no py.typed")
print(f"imported all {len(modules)} modules")
