"""The crawl's parts, made from its spider and settings: the fetcher, the frontier, the page
runner and its rules, robots.txt, the browser, the pipelines, hooks and sinks. The engine runs
them; this room is where settings become the plain arguments the other rooms take."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .. import parser
from ..clock import Clock
from ..errors import ConfigError, FetchError, HTTPStatusError
from ..models import http_statuses
from ..net.addresses import AddressGuard, Resolver
from ..net.cookies import Jars
from ..net.dns import AsyncResolver, DnsCache, Lookup, SystemResolver, fixed_ttl
from ..net.fetcher import Fetcher
from ..net.politeness import Breaker
from ..net.proxies import ProxyPool
from ..net.robots import MAX_ROBOTS_BYTES, Robots, RobotsCache, agent_token
from ..page.devtools import Requester
from ..page.duplicates import Duplicates
from ..page.files import Files, files_store
from ..page.hooks import Hooks, check_hooks
from ..page.pipelines import Pipelines, check_pipelines
from ..page.rules import LinkRules, RetryRules
from ..page.runner import PageRunner, Release
from ..records import NewRequest
from ..render.browser import Renderer
from ..settings import DEFAULT_CACHE_DIR, HostOverrides, Settings
from ..spider import Spider, load_object
from ..store import Store
from ..urls import (
    Canonicalizer,
    InvalidHost,
    Scope,
    TrapGuard,
    canonical_domain,
    registrable_domain,
)
from .export import file_sink
from .frontier import Frontier, KeyOf
from .leases import HostCoordination, SharedLeases, SoleHolder
from .sinks import Sink, check_sinks

log = logging.getLogger("crawler")


class Parts:
    """Makes the parts of one crawl of `spider` under `settings` (see module). `output` is
    the file the items go to (a sink), `transport` replaces the network and `resolver` the
    name lookups (tests), `clock` is the time politeness runs on."""

    def __init__(
        self,
        spider: Spider,
        settings: Settings,
        *,
        output: Path | None = None,
        overwrite_output: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.spider = spider
        self.settings = settings
        self.output = output
        self.overwrite_output = overwrite_output
        self._transport = transport
        self._resolver = resolver
        self.clock = clock or Clock()
        self.canonicalizer = Canonicalizer(
            strip_params=frozenset(settings.strip_query_params),
            strip_tracking=settings.strip_tracking_params,
            sort_query=settings.sort_query,
        )
        #: The spider's per-host settings (checked now: a bad one is an error before the run).
        self.overrides = HostOverrides(spider.host_settings, where=f"spider {spider.name!r}")
        #: The crawl's name lookups (the fetcher's address guard, the politeness key).
        self._dns = DnsCache(self._lookup(), max_in_flight=settings.dns_concurrency)
        #: The crawl's proxies, once the fetcher is made (None: it has none).
        self.proxy_pool: ProxyPool | None = None

    def extensions(self) -> tuple[Pipelines, Hooks, list[Sink]]:
        """The spider's pipelines, hooks and sinks, then those the settings name: each checked
        (or loaded) now, so that a bad one is a one-line error before anything runs."""
        spider, settings = self.spider, self.settings
        where = f"spider {spider.name!r}"
        pipelines = check_pipelines(spider.pipelines, f"{where}: pipelines")
        pipelines += check_pipelines(
            [load_object(spec, "setting 'pipelines'") for spec in settings.pipelines],
            "setting 'pipelines'",
        )
        hooks = check_hooks(spider.hooks, f"{where}: hooks")
        hooks += check_hooks(
            [load_object(spec, "setting 'hooks'") for spec in settings.hooks], "setting 'hooks'"
        )
        sinks = (
            [file_sink(self.output, overwrite=self.overwrite_output)]
            if self.output is not None
            else []
        )
        sinks += check_sinks(spider.sinks, f"{where}: sinks")
        sinks += check_sinks(
            [load_object(spec, "setting 'sinks'") for spec in settings.sinks], "setting 'sinks'"
        )
        check_sinks(sinks, f"{where}: sinks")  # one bookmark each
        return Pipelines(pipelines, spider), Hooks(hooks, spider), sinks

    def fetcher(self, trusted_hosts: frozenset[str], jars: Jars) -> Fetcher:
        settings = self.settings
        return Fetcher(
            user_agent=settings.user_agent,
            timeout=settings.request_timeout,
            max_size=settings.max_response_size,
            max_redirects=settings.max_redirects,
            max_connections=settings.concurrency,
            connect_timeout=settings.connect_timeout,
            backend=settings.fetch_backend,
            impersonate_profile=settings.impersonate_profile,
            ca_bundle=settings.ca_bundle or None,
            transport=self._transport,
            guard=AddressGuard(
                dns=self._dns,
                trusted_hosts=trusted_hosts,
                allow_private=settings.allow_private_networks,
            ),
            jars=jars,
            proxies=self.proxies(),
            cache_dir=Path(settings.http_cache_dir) if settings.http_cache else None,
            cache_ttl=settings.http_cache_ttl or None,
            cache_rfc=settings.http_cache_policy == "rfc9111",
            # a folder the user named is a recording, to commit; the default one is a cache
            cache_recording=settings.http_cache_dir != DEFAULT_CACHE_DIR,
        )

    def _lookup(self) -> Lookup:
        """How names are resolved: the test's resolver if it gave one, else the setting's."""
        settings = self.settings
        if self._resolver is not None:
            return fixed_ttl(self._resolver)
        if settings.dns_resolver == "system":
            return SystemResolver()
        return AsyncResolver(settings.dns_servers, timeout=settings.connect_timeout)

    def frontier(self, store: Store, budget: int | None) -> Frontier:
        settings = self.settings
        batch = max(2 * settings.per_domain_concurrency, 16)
        active = max(16 * settings.concurrency, 256)
        coordination: HostCoordination = SoleHolder(store)
        if store.shared:
            coordination = SharedLeases(
                store,
                # enough hosts to keep every worker busy, twice over (hosts run dry, or wait
                # out their rate limits), and one to spare
                hosts_wanted=2 * -(-settings.concurrency // settings.per_domain_concurrency) + 1,
                heartbeat=min(1.0, settings.lease_ttl / 4),
                max_pages=settings.max_pages or None,
                host_budget=settings.max_pages_per_host or None,
                grant_chunk=batch,
            )
        return Frontier(
            store,
            per_host_concurrency=settings.per_domain_concurrency,
            rate_limit=settings.rate_limit,
            batch_size=batch,
            # rows leased ahead: enough for every active host's next requests
            max_buffered=max(64 * settings.concurrency, 1024),
            page_budget=budget,
            gate_hosts=settings.obey_robots,
            host_budget=settings.max_pages_per_host or None,
            breaker=lambda: Breaker(
                threshold=settings.breaker_threshold,
                cooldown=settings.breaker_cooldown,
                window=settings.breaker_window,
                cooldown_max=settings.breaker_cooldown_max,
                give_up_requests=settings.host_give_up_requests,
                give_up_after=settings.host_give_up_after,
            ),
            clock=self.clock,
            coordination=coordination,
            # a broad crawl works on this many hosts at a time (more while workers idle)
            max_active_hosts=active,
            max_hosts=(
                None
                if store.shared or settings.max_pages_per_host
                else max(settings.max_hosts_in_memory, active)
            ),
            key_of=self._politeness_key(),
            limits=self._host_limits() if self.overrides else None,
        )

    def _host_limits(self) -> Callable[[str], tuple[int, float]]:
        """A host's concurrency and rate: its `host_settings`', else the crawl's."""
        settings, overrides = self.settings, self.overrides

        def limits(host: str) -> tuple[int, float]:
            own = overrides.for_host(host)
            if own is None:
                return settings.per_domain_concurrency, settings.rate_limit
            return (
                own.per_domain_concurrency or settings.per_domain_concurrency,
                settings.rate_limit if own.rate_limit is None else own.rate_limit,
            )

        return limits

    def _politeness_key(self) -> KeyOf | None:
        """What hosts are paced together by (`politeness_key`): None for each host by itself."""
        how = self.settings.politeness_key
        if how == "domain":
            return registrable_domain
        if how != "ip":
            return None
        dns = self._dns

        async def address(host: str) -> str:
            try:
                addresses, _ = await dns.resolve(host)
            except OSError:
                return host  # its fetch fails on the name: paced by itself until then
            return addresses[0]

        def key(host: str) -> str | Awaitable[str]:
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                return address(host)
            return host

        return key

    def renderer(
        self,
        fetcher: Fetcher,
        allows: Callable[[str], bool],
        charge: Callable[[str], None] | None = None,
    ) -> Renderer:
        """The browser for pages that ask to be rendered (started by the first of them); the
        pages may request the URLs that `allows`, and `charge(url)` paces their hosts."""
        settings = self.settings
        return Renderer(
            fetcher=fetcher,
            allows=allows,
            concurrency=settings.browser_concurrency,
            wait=settings.render_wait,
            block=frozenset(settings.block_resources),
            timeout=settings.request_timeout,
            user_agent=settings.user_agent,
            executable=settings.browser_executable,
            charge=charge,
        )

    def charge(self, frontier: Frontier) -> Callable[[str], None]:
        """Requests besides pages (robots.txt, a rendered page's) take their hosts' tokens."""

        def charge(url: str) -> None:
            split = self.canonicalizer.split(url)
            if split is not None:
                frontier.charge(split[1])

        return charge

    def allows(self, scope: Scope) -> Callable[[str], bool]:
        """Whether `scope` allows a URL (in its canonical form)."""

        def allows(url: str) -> bool:
            split = self.canonicalizer.split(url)
            return split is not None and scope.allows(*split)

        return allows

    def crawl_page_runner(
        self,
        store: Store,
        fetcher: Fetcher,
        frontier: Frontier,
        hooks: Hooks,
        renderer: Renderer | None,
        scope: Scope,
        duplicates: Duplicates | None = None,
        archive: bool = False,
    ) -> PageRunner:
        """The crawl's page runner: robots.txt kept in `store`, host slots freed to
        `frontier`, links judged by `scope`, pages judged against `duplicates`."""
        robots = self.robots(
            RobotsCache(
                # robots.txt takes its host's token: the host's pace holds at the server
                fetch=self.robots_fetcher(fetcher, self.charge(frontier)),
                load=store.robots_get,
                save=store.robots_put,
            ),
            self.crawl_delay(frontier),
        )
        if robots is not None:  # a host evicted has its rules loaded (and applied) again
            frontier.on_evict = robots.forget
        return self.page_runner(
            fetcher,
            robots,
            scope,
            hooks,
            renderer,
            release=frontier.release,
            refund=frontier.refund,
            duplicates=duplicates,
            files=self.files(store, fetcher, robots, self.charge(frontier)),
            archive=archive,
        )

    def page_runner(
        self,
        fetcher: Fetcher,
        robots: Robots | None,
        scope: Scope,
        hooks: Hooks,
        renderer: Renderer | None,
        *,
        release: Release,
        refund: Callable[[str], None] | None = None,
        known_urls: int = 200_000,
        duplicates: Duplicates | None = None,
        files: Files | None = None,
        archive: bool = False,
    ) -> PageRunner:
        """The page runner of the crawl (or, with no store, of one page at a time); `archive`:
        pages keep their exchanges for the web archive."""
        settings = self.settings
        return PageRunner(
            spider=self.spider,
            fetcher=fetcher,
            robots=robots,
            links=LinkRules(
                scope,
                settings.max_depth,
                TrapGuard(
                    max_length=settings.max_url_length,
                    max_repeats=settings.max_repeated_segments,
                    max_params=settings.max_query_params,
                ),
            ),
            retries=RetryRules(
                max_retries=settings.max_retries,
                statuses=frozenset(settings.retry_statuses),
                backoff=settings.retry_backoff,
                backoff_max=settings.retry_backoff_max,
                max_retry_after=settings.max_retry_after,
            ),
            canonicalizer=self.canonicalizer,
            obey_nofollow=settings.obey_nofollow,
            release=release,
            allow_status=self.allow_status(),
            clock=self.clock,
            hooks=hooks if hooks.on_request or hooks.on_response else None,
            refund=refund,
            host_settings=self.overrides.for_host if self.overrides else None,
            renderer=renderer,
            render_all=self.spider.render,
            known_urls=known_urls,
            duplicates=duplicates,
            files=files,
            archive=archive,
        )

    def files(
        self, store: Store, fetcher: Fetcher, robots: Robots | None, charge: Callable[[str], None]
    ) -> Files | None:
        """Where the files items name go (None: the crawl does not download them)."""
        settings = self.settings
        if not settings.files_store:
            return None
        return Files(
            fetcher,
            files_store(settings.files_store),
            known=store.files_known,
            max_size=settings.files_max_size,
            time_limit=settings.files_timeout,
            allowed=robots.allowed if robots is not None else None,
            charge=charge,
        )

    async def duplicates(self, store: Store) -> Duplicates | None:
        """The index of pages crawled (None: the crawl does not look for duplicates), filled
        with the fingerprints kept in `store` (and, when other processes share it, with theirs
        as they commit)."""
        settings = self.settings
        if settings.duplicates == "off":
            return None
        index = Duplicates(
            settings.duplicate_similarity,
            nofollow=settings.duplicates == "nofollow",
            feed=store.fingerprints_since if store.shared else None,
        )
        await index.read(store.fingerprints_since)
        return index

    def proxies(self) -> ProxyPool | None:
        """The crawl's proxies (or the environment's); None when every request goes direct."""
        pool = ProxyPool(self.settings.proxies, clock=self.clock)
        self.proxy_pool = pool if pool.active else None
        return self.proxy_pool

    def allow_status(self) -> tuple[int, ...]:
        """The spider's allow_status (from the command line, its entries are strings)."""
        try:
            return http_statuses([int(status) for status in self.spider.allow_status])
        except (TypeError, ValueError):
            raise ConfigError(
                f"spider {self.spider.name!r}: allow_status must list HTTP statuses, "
                f"got {self.spider.allow_status!r}"
            ) from None

    def robots(
        self, cache: RobotsCache, on_rules: Callable[[str, float], None] | None
    ) -> Robots | None:
        """What robots.txt allows (None: the crawl does not obey it)."""
        settings = self.settings
        if not settings.obey_robots:
            return None
        return Robots(
            cache,
            settings.robots_user_agent or agent_token(settings.user_agent),
            ttl=settings.robots_ttl,
            on_rules=on_rules,
            clock=self.clock.now,
        )

    def robots_fetcher(
        self, fetcher: Fetcher, charge: Callable[[str], None] | None = None
    ) -> Callable[[str], Awaitable[str]]:
        """robots.txt's text from `fetcher` (with its host's `fetch_backend`); `charge(url)`
        once a request went out for it."""
        overrides = self.overrides

        async def fetch_text(url: str) -> str:
            own = overrides.for_host(urlsplit(url).hostname or "") if overrides else None
            try:
                fetched = await fetcher.fetch(
                    url,
                    max_size=MAX_ROBOTS_BYTES,
                    truncate=True,
                    error_body=charge is not None,
                    backend=own.fetch_backend if own is not None else None,
                )
            except FetchError as exc:
                answer = exc.response if isinstance(exc, HTTPStatusError) else None
                cached = answer is not None and answer.cached
                if charge is not None and exc.sent and not cached:
                    charge(url)
                raise
            if charge is not None and not fetched.cached:
                charge(url)
            return parser.decode(fetched.body, "text/plain; charset=utf-8")

        return fetch_text

    def crawl_delay(self, frontier: Frontier) -> Callable[[str, float], None]:
        cap = self.settings.max_crawl_delay

        def apply(host: str, interval: float) -> None:
            if interval > cap:
                log.warning(
                    "%s asks for a Crawl-delay of %g s; using max_crawl_delay (%g s)",
                    host,
                    interval,
                    cap,
                )
                interval = cap
            frontier.host_rules(host, interval)

        return apply

    def spider_scope(self, start_hosts: Iterable[str]) -> Scope:
        """The spider's scope from these start hosts (see Scope.of); a ConfigError for an
        allowed domain no browser would accept."""
        try:
            return Scope.of(
                start_hosts=start_hosts,
                allowed_domains=self.spider.allowed_domains,
                strategy=self.spider.scope,
                allow=self.spider.allow,
                deny=self.spider.deny,
            )
        except InvalidHost as exc:
            raise ConfigError(f"spider {self.spider.name!r}: allowed_domains: {exc}") from None

    def trusted_hosts(self, seeds: list[NewRequest]) -> frozenset[str]:
        """The hosts the spider's author named, which may be private (a local site): the
        start requests' hosts and the allowed domains, exactly (not their subdomains)."""
        named = map(canonical_domain, self.spider.allowed_domains or ())
        return frozenset([*(seed.host for seed in seeds), *named])

    @contextlib.asynccontextmanager
    async def requester(self, urls: Iterable[str] = ()) -> AsyncIterator[Requester]:
        """One request at a time through this crawl's fetcher, robots.txt, address guard and
        hooks, with no store (the `fetch`, `parse` and `shell` commands). `urls` stand for the
        start URLs: their hosts are trusted (they may be private addresses) and set the scope."""
        pipelines, hooks, _ = self.extensions()
        given = [split[1] for url in urls if (split := self.canonicalizer.split(url))]
        started = [
            split[1] for url in self.spider.start_urls if (split := self.canonicalizer.split(url))
        ]
        scope = self.spider_scope(given or started)
        fetcher = self.fetcher(self.trusted_hosts([]) | {*given, *started}, Jars({}))
        kept: dict[str, tuple[float, str | None]] = {}

        async def load(origin: str) -> tuple[float, str | None] | None:
            return kept.get(origin)

        async def save(origin: str, fetched_at: float, body: str | None) -> None:
            kept[origin] = (fetched_at, body)

        robots = self.robots(RobotsCache(self.robots_fetcher(fetcher), load, save), None)
        renderer = self.renderer(fetcher, self.allows(scope))
        # one page at a time, through the crawl's own page runner: no slots to free, and no
        # memory of links across pages (each page shows every request it would queue)
        runner = self.page_runner(
            fetcher, robots, scope, hooks, renderer, release=_no_release, known_urls=0
        )
        requester = Requester(
            self.spider,
            runner,
            pipelines,
            self.canonicalizer,
            self.spider_scope,
            allow_status=self.allow_status(),
        )
        try:
            yield requester
        finally:
            await requester.aclose()
            await renderer.aclose()
            await fetcher.aclose()


def _no_release(*_: object, **__: object) -> None:
    """A page outside a crawl holds no host slot."""
