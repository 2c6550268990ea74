"""Rendering: loads fetched documents in a headless Chromium (Playwright), whose every request
the crawl's own fetcher makes. Playwright is imported when the first page is rendered, not before.

The browser has no network of its own. It starts with a proxy that refuses every connection (a
socket bound here, never listening), and each request a page makes is intercepted (Playwright's
routing) and, once the crawl's scope allows its URL, fetched by the crawl's Fetcher: through the
address guard (checked and pinned addresses), the proxies, the session's cookie jar, the size
caps and the HTTP cache. So a page's scripts reach no host that the crawl itself may not, and a
request that slips past routing (a WebSocket, say) fails at the refusing proxy. WebRTC may not
use UDP, which no proxy carries.

The document is the one the crawl fetched (robots.txt, per-host concurrency, the rate limit,
retries and revisits applied as to any page): the page's navigation is answered with it, so it
is requested once. One browser serves the crawl, with a context per cookie session and pages
kept open for reuse. Chromium exits when its pipe to Playwright closes, so a killed crawl
leaves no browser behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from .. import parser
from ..errors import ConfigError, RenderError
from ..net.cookies import from_browser, to_browser
from ..net.fetcher import Fetched, Fetcher
from .intercept import Interceptor, Load, Rendered

log = logging.getLogger("crawler")

#: What `render_wait` may name besides a CSS selector (Playwright's load states).
LOAD_STATES = frozenset({"load", "domcontentloaded", "networkidle"})
#: The system Chromium builds looked for on PATH, in order.
_EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Seconds a page may take to close or be reset before it is given up.
_CLOSE_SECONDS = 5.0
#: Loads a page is used for before it is closed: a reused page's renderer keeps ~2 MB of each
#: load (measured: 50 MB after 100 loads in new pages, 285 MB in one reused page), and a new
#: page costs ~65 ms to open and close, so 20 loads bound the memory at a few ms per load.
PAGE_LOADS = 20


def renders(asked: bool | None, by_default: bool, document: Fetched) -> bool:
    """Whether a document is rendered: its request asked (`asked`; None: `by_default`, the
    spider's `render`), and it is HTML."""
    wanted = by_default if asked is None else asked
    return wanted and parser.is_html(document.headers.get("content-type"))


class Renderer:
    """Renders fetched documents (see the module docstring). Use as an async context manager;
    the browser starts with the first `render`.

    `fetcher` makes the pages' requests; `allows(url)` says whether a URL is in the crawl's
    scope; `concurrency` pages are open at once; `wait` is "load", "domcontentloaded",
    "networkidle" or a CSS selector; `block` are resource types not loaded; `timeout`
    (seconds) bounds a page's load; `executable` is the Chromium to run ("" to look for one);
    `charge(url)` is told of every request a page made that went out (not the document, not
    what the HTTP cache answered), for the rate limits.
    """

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        allows: Callable[[str], bool],
        concurrency: int,
        wait: str,
        block: frozenset[str],
        timeout: float,
        user_agent: str,
        executable: str = "",
        charge: Callable[[str], None] | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._requests = Interceptor(fetcher=fetcher, allows=allows, block=block, charge=charge)
        self._slots = asyncio.Semaphore(concurrency)
        self._wait = wait
        self._timeout = timeout
        self._user_agent = user_agent
        self._executable = executable
        self._contexts_max = max(2 * concurrency, 8)
        self._playwright: Any = None
        self._browser: Any = None
        self._refuser: socket.socket | None = None
        self._starting: asyncio.Lock | None = None
        #: Open contexts by session, least recently used first, with their idle pages.
        self._contexts: OrderedDict[str, Any] = OrderedDict()
        self._idle: dict[str, list[Any]] = {}
        #: Loads each open page has served (see PAGE_LOADS).
        self._loaded: dict[Any, int] = {}
        #: Pages in use, by context.
        self._busy: dict[Any, int] = {}
        #: The cookies last given to each context (given again only when the jar changed).
        self._synced: dict[str, list[dict[str, Any]]] = {}

    async def __aenter__(self) -> Renderer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the browser (and Playwright's driver with it)."""
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        self._contexts.clear()
        self._idle.clear()
        self._loaded.clear()
        try:
            if browser is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CLOSE_SECONDS):
                        await browser.close()
            if playwright is not None:
                with contextlib.suppress(Exception):
                    await playwright.stop()
        finally:
            if self._refuser is not None:
                self._refuser.close()
                self._refuser = None

    @contextlib.asynccontextmanager
    async def render(
        self, document: Fetched, *, session: str = "", proxy: str | None = None
    ) -> AsyncIterator[Rendered]:
        """Load `document` (fetched by the crawl, in cookie `session`) in a page and wait
        until it is ready; the page's requests go through `proxy` when one is given (else
        the crawl's). The page stays open until the block ends. Raises RenderError when
        the page crashes or is not ready within the timeout, ConfigError when no browser can
        be started."""
        Error = _playwright().Error

        async with self._slots:
            try:
                context = await self._context(session)
                page = await self._page(context, session)
            except Error as exc:  # the browser went away meanwhile: the next page starts one
                raise RenderError(document.url, f"the browser failed: {_first_line(exc)}") from None
            load = self._requests.loads[page] = Load(document, session, proxy)
            rendered = load.counts
            rendered.page = page
            healthy = False
            try:
                rendered.html = await self._load(page, document)
                healthy = True
                yield rendered
            finally:
                del self._requests.loads[page]
                for task in load.answering:  # what is still loading is not waited for
                    task.cancel()
                rendered.page = None
                await self._put_back(context, session, page, reuse=healthy and not rendered.used)
                await self._save_cookies(context, session)

    async def _load(self, page: Any, document: Fetched) -> bytes:
        Error = _playwright().Error

        url = document.url
        wait = self._wait if self._wait in LOAD_STATES else "commit"
        milliseconds = self._timeout * 1000
        try:
            async with asyncio.timeout(self._timeout + 1):  # the driver's own timeouts, bounded
                await page.goto(url, wait_until=wait, timeout=milliseconds)
                if self._wait not in LOAD_STATES:
                    await page.wait_for_selector(self._wait, state="attached", timeout=milliseconds)
                html: str = await page.content()
        except TimeoutError:
            raise RenderError(url, f"not ready within {self._timeout:g} s") from None
        except Error as exc:
            message = _first_line(exc)
            if "Timeout" in type(exc).__name__ or "Timeout " in message:
                raise RenderError(
                    url, f"not ready within {self._timeout:g} s (render_wait {self._wait!r})"
                ) from None
            raise RenderError(url, f"the browser failed: {message}") from None
        return html.encode()

    # -- the browser, its contexts and pages ------------------------------------------------

    async def _started(self) -> Any:
        """The browser, started (again, if it went away)."""
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._browser is not None:
                log.warning("the browser went away; starting another")
                self._contexts.clear()
                self._idle.clear()
                self._loaded.clear()
                self._synced.clear()
            started = time.monotonic()
            self._browser = await self._launch()
            log.info("browser started in %.2f s", time.monotonic() - started)
            return self._browser

    async def _launch(self) -> Any:
        api = _playwright()
        Error = api.Error
        if self._refuser is None:
            self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._refuser.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
        port = self._refuser.getsockname()[1]
        executable = self._executable or _system_chromium()
        if self._playwright is None:
            try:
                self._playwright = await api.async_playwright().start()
            except Exception as exc:
                raise ConfigError(f"cannot start Playwright: {exc}") from None
        try:
            return await self._playwright.chromium.launch(
                executable_path=executable,
                args=[
                    f"--proxy-server=http://127.0.0.1:{port}",
                    "--proxy-bypass-list=<-loopback>",  # loopback too goes to the refuser
                    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
                    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
                    # a crawl never goes back: pages kept for history only cost time
                    "--disable-features=BackForwardCache",
                    "--disable-gpu",  # headless, nothing is shown: no GPU process
                ],
            )
        except Error as exc:
            first = _first_line(exc)
            where = executable or "Playwright's Chromium"
            raise ConfigError(
                f"cannot start the browser ({where}): {first}; install Chromium (apt install "
                "chromium) or set browser_executable"
            ) from None

    async def _context(self, session: str) -> Any:
        """The browser context of cookie `session`, its cookies as the crawl's jar has them."""
        browser = await self._started()
        context = self._contexts.get(session)
        if context is None:
            context = await browser.new_context(
                user_agent=self._user_agent, service_workers="block"
            )
            context.set_default_timeout(self._timeout * 1000)
            await context.route("**/*", self._requests.route)
            self._contexts[session] = context
            self._idle[session] = []
            await self._close_idle_contexts()
        self._contexts.move_to_end(session)
        cookies = to_browser(self._fetcher.jars.jar(session).jar)
        if cookies != self._synced.get(session, []):  # the jar changed since the last page
            await _add_cookies(context, cookies)
            self._synced[session] = cookies
        return context

    async def _close_idle_contexts(self) -> None:
        """Close the least recently used contexts no page is open in, past the bound."""
        for session in list(self._contexts):
            if len(self._contexts) <= self._contexts_max:
                return
            if self._busy.get(self._contexts[session]):
                continue
            context = self._contexts.pop(session)
            self._busy.pop(context, None)
            for page in self._idle.pop(session, []):
                self._loaded.pop(page, None)
            self._synced.pop(session, None)
            with contextlib.suppress(Exception):
                await context.close()

    async def _page(self, context: Any, session: str) -> Any:
        self._busy[context] = self._busy.get(context, 0) + 1
        idle = self._idle.setdefault(session, [])
        if idle:
            return idle.pop()
        try:
            page = await context.new_page()
        except BaseException:
            self._busy[context] -= 1
            raise
        self._loaded[page] = 0
        return page

    async def _put_back(self, context: Any, session: str, page: Any, *, reuse: bool) -> None:
        """Keep `page` for the next load, or close it. A page kept is left as it is (going to
        about:blank cost a fifth of a load): while idle, whatever its scripts ask for is
        refused (see Interceptor.route)."""
        self._busy[context] -= 1
        current = self._contexts.get(session) is context
        if not current and not self._busy[context]:
            del self._busy[context]  # a context of a browser that went away
        loads = self._loaded.pop(page, PAGE_LOADS) + 1
        if reuse and current and loads < PAGE_LOADS:
            self._loaded[page] = loads
            self._idle[session].append(page)
            return
        try:
            async with asyncio.timeout(_CLOSE_SECONDS):
                await page.close(run_before_unload=False)
        except Exception as exc:  # a crashed or hung page: the browser reaps it
            log.debug("could not reset a page: %s", exc)

    async def _save_cookies(self, context: Any, session: str) -> None:
        """Keep in the crawl's jar the cookies the browser holds for `session` (scripts set
        some), so that they are committed with the page."""
        try:
            cookies = await context.cookies()
        except Exception:  # the context or browser went away: what the jar has stays
            return
        jars = self._fetcher.jars
        jar = jars.jar(session).jar
        known = {(c.domain, c.path, c.name): c.value for c in jar}
        changed = False
        for cookie in cookies:
            key = (cookie["domain"], cookie["path"], cookie["name"])
            if known.get(key) != cookie["value"]:
                jar.set_cookie(from_browser(cookie))
                changed = True
        if changed:
            jars.changed(session)
        self._synced[session] = to_browser(jar)


async def _add_cookies(context: Any, cookies: list[dict[str, Any]]) -> None:
    """Give `cookies` to the browser context; one it refuses (a domain it does not take, say)
    is left out, not the others."""
    error = _playwright().Error
    try:
        await context.add_cookies(cookies)
    except error:
        for cookie in cookies:
            try:
                await context.add_cookies([cookie])
            except error as exc:
                log.debug("the browser refused cookie %s: %s", cookie["name"], _first_line(exc))


def _playwright() -> Any:
    """Playwright's asyncio API (imported on first use); a ConfigError when it is missing."""
    try:
        import playwright.async_api
    except ImportError:
        raise ConfigError(
            "rendering pages (render=True) needs Playwright: pip install 'crawler[browser]'"
        ) from None
    return playwright.async_api


def _first_line(exc: Exception) -> str:
    text = (getattr(exc, "message", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _system_chromium() -> str | None:
    """The system's Chromium, if there is one on PATH (else Playwright's own is used)."""
    for name in _EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None
