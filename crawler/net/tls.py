"""The system's CA certificates, loaded beside startup instead of in its way.

aiohttp builds its two default SSL contexts when it is imported, and each one loads the
system's CA bundle: about 50 ms apiece with OpenSSL 3, a fifth of the time `python -m crawler
run` takes to send its first request. Imported under `deferred_verify_paths()` (by the command
line only: see `deferred_for_the_command_line`), those loads are
recorded instead and then run in a background thread, where they overlap the rest of startup
(OpenSSL parses the bundle without holding the GIL); the context that verifies nothing
(CERT_NONE) is left without the CAs it would never consult. Whatever may use those contexts awaits
`verify_paths_loaded()` first: the transport before an https request, the engine before it runs
spider code (which may call aiohttp itself). By then the loads are nearly always done. A fork
waits for them too, so that a child process never inherits a half-loaded context.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_loaders: list[threading.Thread] = []
_errors: list[BaseException] = []


def deferred_for_the_command_line() -> contextlib.AbstractContextManager[None]:
    """`deferred_verify_paths()` when this process is the crawler's own command line (`python
    -m crawler`, or the `crawler` script), which knows every user of those contexts; a program
    that imports crawler keeps aiohttp's contexts loaded as aiohttp loads them."""
    return deferred_verify_paths() if command_line() else contextlib.nullcontext()


def command_line() -> bool:
    """Whether this process runs the crawler's command line."""
    argv = sys.orig_argv
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "crawler":
        return True
    return Path(sys.argv[0]).name == "crawler"


@contextmanager
def deferred_verify_paths() -> Iterator[None]:
    """Within, `SSLContext.set_default_verify_paths()` called by this thread is recorded, not
    run; on exit the recorded calls run in a background thread. Calls from other threads run
    as usual."""
    original: Callable[[ssl.SSLContext], None] = ssl.SSLContext.set_default_verify_paths
    importer = threading.get_ident()
    deferred: list[ssl.SSLContext] = []

    def record(context: ssl.SSLContext) -> None:
        if threading.get_ident() != importer:
            original(context)
        elif context.verify_mode != ssl.CERT_NONE:  # a context that verifies nothing needs no CAs
            deferred.append(context)

    ssl.SSLContext.set_default_verify_paths = record  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign,assignment]
    if not deferred:
        return

    def load() -> None:
        try:
            for context in deferred:
                original(context)
        except BaseException as e:  # handed to whoever waits
            _errors.append(e)

    # Not a daemon: the interpreter waits for it before tearing modules down. A daemon thread
    # still inside OpenSSL when aiohttp's contexts are freed at exit crashed the process
    # (SIGSEGV, about 1 exit in 100 right after the import).
    loader = threading.Thread(target=load, name="crawler-ca-certificates", daemon=False)
    loader.start()
    _loaders.append(loader)


def _join() -> None:
    for loader in _loaders:
        loader.join()


async def verify_paths_loaded() -> None:
    """Return once the deferred CA loading is done (at once when it is, or when nothing was
    deferred), waiting in a thread rather than on the event loop; raise its error, if it
    failed."""
    if any(loader.is_alive() for loader in _loaders):
        await asyncio.to_thread(_join)
    if _errors:
        raise _errors[0]


os.register_at_fork(before=_join)
