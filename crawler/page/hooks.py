"""Request and response hooks: code that sees every request before it goes out and every
response before its callback.

- `process_request(request, spider)` returns the request to send (the same one, changed, or a
  new one for the same host), or None to drop it (recorded as failed with error "ignored").
- `process_response(request, response, spider)` inspects a response; it may return another
  Response (or None: unchanged), or raise `Retry(reason)` to fetch the request again later, as
  after a timeout (a ban page served with status 200, say).

Hooks are objects listed in the `hooks` setting and the spider's `hooks` attribute, then the
spider's own `process_request` / `process_response` methods (which may leave out the `spider`
argument); they run in that order, may be async, and see retries too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError
from ..errors import Retry as Retry  # (re-exported)
from ..models import Request, Response

_METHODS = ("process_request", "process_response")


def check_hooks(hooks: Any, where: str) -> list[Any]:
    """The hooks of `where` as a list of objects with a hook method; a ConfigError otherwise."""
    if isinstance(hooks, str | bytes) or not isinstance(hooks, Sequence):
        raise ConfigError(f"{where} must be a list of hook objects")
    for hook in hooks:
        if inspect.isclass(hook):
            raise ConfigError(
                f"{where}: {hook.__name__} is a class: list instances, e.g. {hook.__name__}()"
            )
        if not any(callable(getattr(hook, name, None)) for name in _METHODS):
            raise ConfigError(
                f"{where}: {type(hook).__name__} has neither process_request(request, spider) "
                "nor process_response(request, response, spider)"
            )
    return list(hooks)


class Hooks:
    """The crawl's hooks, in order (see the module's docstring)."""

    def __init__(self, hooks: Sequence[Any], spider: Any) -> None:
        self._spider = spider
        self._request: list[tuple[str, Callable[..., Any]]] = []
        self._response: list[tuple[str, Callable[..., Any]]] = []
        for hook in hooks:
            for name, chain in zip(_METHODS, (self._request, self._response), strict=True):
                method = getattr(hook, name, None)
                if callable(method):
                    chain.append((f"{type(hook).__name__}.{name}", _with_spider(method, spider)))
        for name, chain in zip(_METHODS, (self._request, self._response), strict=True):
            method = getattr(spider, name, None)
            if callable(method):
                arity = 1 if name == "process_request" else 2
                if _positional(method) > arity:
                    method = _with_spider(method, spider)
                chain.append((f"{type(spider).__name__}.{name}", method))

    @property
    def on_request(self) -> bool:
        return bool(self._request)

    @property
    def on_response(self) -> bool:
        return bool(self._response)

    async def request(self, request: Request) -> Request | None:
        """The request to send after every process_request hook, or None (dropped)."""
        for name, hook in self._request:
            result = await _maybe_await(hook(request))
            if result is None:
                return None
            if not isinstance(result, Request):
                raise TypeError(
                    f"{name}() returned a {type(result).__name__}: return a Request, or None "
                    "to drop it"
                )
            request = result
        return request

    async def response(self, request: Request, response: Response) -> Response:
        """The response after every process_response hook (Retry propagates)."""
        for name, hook in self._response:
            result = await _maybe_await(hook(request, response))
            if result is not None:
                if not isinstance(result, Response):
                    raise TypeError(
                        f"{name}() returned a {type(result).__name__}: return None, a Response, "
                        "or raise Retry(reason)"
                    )
                response = result
        return response


def _with_spider(method: Callable[..., Any], spider: Any) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        return method(*args, spider)

    return call


def _positional(method: Callable[..., Any]) -> int:
    """How many positional arguments `method` takes (a large number for *args)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 0
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 99
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


async def _maybe_await(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result
