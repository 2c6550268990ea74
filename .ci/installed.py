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

# The wheel alone has no curl-cffi (an extra): a crawl asking for its backends must say how to
# get it, before it starts, not fail page after page.
from crawler import ConfigError, Settings  # noqa: E402
from crawler.net.addresses import AddressGuard  # noqa: E402
from crawler.net.fetcher import Fetcher  # noqa: E402

try:
    import curl_cffi  # noqa: F401
except ImportError:
    for backend in ("http2", "impersonate"):
        try:
            Fetcher(
                user_agent="ci",
                timeout=1,
                max_size=1,
                max_redirects=0,
                max_connections=1,
                backend=Settings(fetch_backend=backend).fetch_backend,
                guard=AddressGuard(),
            )
        except ConfigError as exc:
            if f"pip install 'crawler[{backend}]'" not in str(exc):
                sys.exit(f"error: fetch_backend={backend} without curl-cffi: {exc}")
            print(f"fetch_backend={backend} without curl-cffi: {exc}")
        else:
            sys.exit(f"error: fetch_backend={backend} without curl-cffi was not refused")
