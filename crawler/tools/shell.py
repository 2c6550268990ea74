"""`python -m crawler shell [URL]`: an interactive console to try selectors on live pages.

The crawl's pieces (a Requester: fetcher, robots.txt, guard, hooks) live on an event loop in a
thread of their own; the console runs in the main thread (so Ctrl-C interrupts a statement, not
the shell) and accepts top-level `await`, as `python -m asyncio` does. IPython is used when it
is installed; the plain console edits lines, keeps a history (~/.crawler_history) and
completes names with Tab through `readline` where Python has it. In the console:

    response, request, spider      the last page fetched, its request, the spider
    fetch(url_or_request)          fetch a page; it becomes `response` (`await fetch(...)` too)
    view(response)                 write the page to a temporary file and print its path
                                   (with a <base href>, so that a browser shows it whole)
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextlib
import inspect
import os
import sys
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any

from ..models import Request, Response
from ..page.devtools import Requester, page_file

BANNER = """crawler shell: response, request, spider; fetch(url); view(response)
(Ctrl-D to leave)"""

#: Where the plain console keeps the lines typed, across sessions.
HISTORY = "~/.crawler_history"


class _Loop:
    """An event loop running in a daemon thread; `call(coroutine)` waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class _Console(code.InteractiveConsole):
    """The standard console, with top-level `await` run on the shell's loop."""

    def __init__(self, namespace: dict[str, Any], loop: _Loop) -> None:
        super().__init__(namespace, filename="<crawler shell>")
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self._loop = loop

    def runcode(self, code: types.CodeType) -> None:
        try:
            result = types.FunctionType(code, self.locals)()
            if inspect.iscoroutine(result):
                self._loop.call(result)
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()


def namespace(requester: Requester, loop: _Loop, response: Response | None) -> dict[str, Any]:
    """What the console sees: the spider, the last response and request, fetch and view."""
    names: dict[str, Any] = {
        "spider": requester.spider,
        "response": response,
        "request": response.request if response is not None else None,
        "Request": Request,
    }

    def fetched(response: Response) -> Response:
        names["response"], names["request"] = response, response.request
        print(f"{response.status} {response.url} ({len(response.body)} bytes)", file=sys.stderr)
        return response

    async def fetch_async(target: Request | str) -> Response:
        future = asyncio.run_coroutine_threadsafe(requester.fetch(target), loop.loop)
        return fetched(await asyncio.wrap_future(future))

    def fetch(target: Request | str) -> Any:
        """Fetch a URL or a Request as the crawl would; the response becomes `response`.
        `fetch(url)` returns the response; in a statement that awaits (`await fetch(url)`)
        it is awaitable."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a plain statement: fetch now, on the shell's loop
            return fetched(loop.call(requester.fetch(target)))
        return fetch_async(target)

    def view(page: Response | None = None) -> str:
        """Write `page` (the last response) to a temporary file; returns its path."""
        shown = page if page is not None else names["response"]
        if shown is None:
            raise ValueError("nothing fetched yet: await fetch(url) first")
        path = str(page_file(shown))
        print(path)
        return path

    names["fetch"], names["view"] = fetch, view
    return names


def run(
    open_requester: Callable[[], contextlib.AbstractAsyncContextManager[Requester]],
    url: str | None,
) -> None:
    """Open a Requester on the shell's loop, fetch `url` (when given), run the console until
    Ctrl-D, then close everything."""
    loop = _Loop()
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[Requester, Response | None]:
        requester = await stack.enter_async_context(open_requester())
        return requester, (await requester.fetch(url) if url else None)

    try:
        requester, response = loop.call(start())
        if response is not None:
            print(f"{response.status} {response.url} ({len(response.body)} bytes)", file=sys.stderr)
        names = namespace(requester, loop, response)
        try:
            from IPython import start_ipython
        except ImportError:
            start_ipython = None
        if start_ipython is None:
            save_history = _line_editing(names)
            try:
                _Console(names, loop).interact(banner=BANNER, exitmsg="")
            finally:
                save_history()
        else:  # pragma: no cover - IPython is not a dependency
            print(BANNER, file=sys.stderr)
            start_ipython(argv=["--no-banner"], user_ns=names)
    finally:
        with contextlib.suppress(Exception, concurrent.futures.CancelledError):
            loop.call(stack.aclose())
        loop.close()


def _line_editing(names: dict[str, Any]) -> Callable[[], None]:
    """Line editing, history and Tab completion of `names` for the plain console, through
    `readline` (absent on some Pythons: then the console works without); returns what saves
    the history when the console ends."""
    try:
        import readline
        import rlcompleter
    except ImportError:  # pragma: no cover - CPython on Linux and macOS has it
        return lambda: None
    readline.set_completer(rlcompleter.Completer(names).complete)
    readline.parse_and_bind("tab: complete")
    history = os.path.expanduser(HISTORY)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(history)

    return save
