"""Item pipelines: what a spider's items go through before they are stored.

A pipeline is any object with `process_item(item, spider)` (a plain or an async method) that
returns the item, changed or not, or raises `DropItem(reason)`; `open(spider)` and
`close(spider)` are optional. The engine's writer runs the pipelines, in order, on the items of
each page just before the page commits, one page at a time and in commit order. So what is
stored is exactly their output, and `spider.state` as saved with a commit reflects exactly the
pages committed so far (a dedup pipeline keyed on it stays right across kills).

Items may be dicts, dataclasses, attrs classes or pydantic models (itemadapter tells them
apart); they are stored as JSON objects. A pydantic ValidationError raised by a pipeline drops
the item with the error as its reason. No I/O here but what pipelines do.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, DropItem, SpiderError
from ..records import ErrorKind, Outcome, State
from ..stats import DROPPED, counting

log = logging.getLogger("crawler")

#: The longest drop reason kept (reasons are counted: they should name a kind of problem).
MAX_REASON = 160


def check_pipelines(pipelines: Any, where: str) -> list[Any]:
    """The pipelines of `where` (the spider's `pipelines` attribute, or the setting) as a list
    of objects that have a `process_item` method; a ConfigError naming the first that does not."""
    if isinstance(pipelines, str | bytes) or not isinstance(pipelines, Sequence):
        raise ConfigError(f"{where} must be a list of pipeline objects")
    for pipeline in pipelines:
        if inspect.isclass(pipeline):
            raise ConfigError(
                f"{where}: {pipeline.__name__} is a class: list instances, "
                f"e.g. {pipeline.__name__}()"
            )
        if not callable(getattr(pipeline, "process_item", None)):
            raise ConfigError(
                f"{where}: {type(pipeline).__name__} has no process_item(item, spider) method"
            )
        for hook in ("open", "close"):
            if hasattr(pipeline, hook) and not callable(getattr(pipeline, hook)):
                raise ConfigError(f"{where}: {type(pipeline).__name__}.{hook} is not a method")
    return list(pipelines)


class Pipelines:
    """Runs the crawl's pipelines and turns the items that come out into JSON text."""

    def __init__(self, pipelines: Sequence[Any], spider: Any) -> None:
        self._pipelines = list(pipelines)
        self._spider = spider
        self._opened: list[Any] = []

    async def open(self) -> None:
        """Call each pipeline's `open(spider)`, in order."""
        for pipeline in self._pipelines:
            await _call(pipeline, "open", self._spider)
            self._opened.append(pipeline)

    async def close(self) -> None:
        """Call `close(spider)` of the pipelines opened, in reverse order; every one runs even
        when one raises (the first error is raised afterwards)."""
        error: BaseException | None = None
        while self._opened:
            pipeline = self._opened.pop()
            try:
                await _call(pipeline, "close", self._spider)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    async def process(self, outcome: Outcome) -> Outcome:
        """The outcome with its items run through the pipelines and stored as JSON. Dropped
        items are counted in `outcome.counters`; a pipeline error (or an item that is not
        JSON-serializable) fails the page as a spider error, keeping nothing of it."""
        produced, outcome.produced = outcome.produced, []
        if not produced:
            return outcome
        url = outcome.request.url
        if outcome.counters is None:
            outcome.counters = {}
        with counting(outcome.counters) as counters:
            try:
                for item in produced:
                    kept = await self._run(item, url, counters)
                    if kept is not None:
                        outcome.items.append(item_json(kept, url))
            except SpiderError as exc:
                return _failed(outcome, exc)
        return outcome

    async def _run(self, item: Any, url: str, counters: dict[str, int]) -> Any:
        for pipeline in self._pipelines:
            name = f"{type(pipeline).__name__}.process_item"
            try:
                item = pipeline.process_item(item, self._spider)
                if inspect.isawaitable(item):
                    item = await item
            except DropItem as exc:
                reason = _reason(exc.reason)
            except Exception as exc:
                invalid = _validation_reason(exc)
                if invalid is None:
                    raise SpiderError(url, f"{name}() raised {type(exc).__name__}: {exc}") from exc
                reason = invalid
            else:
                if item is None:
                    raise SpiderError(
                        url, f"{name}() returned None: return the item, or raise DropItem(reason)"
                    )
                continue
            key = DROPPED + reason
            counters[key] = counters.get(key, 0) + 1
            return None
        return item


def _failed(outcome: Outcome, exc: SpiderError) -> Outcome:
    log.error("%s", exc, exc_info=exc.__cause__)
    return dataclasses.replace(
        outcome,
        state=State.FAILED,
        error=ErrorKind.SPIDER,
        message=exc.message,
        items=[],
        links=[],
        produced=[],
        not_before=0.0,
    )


async def _call(pipeline: Any, method: str, spider: Any) -> None:
    function = getattr(pipeline, method, None)
    if function is None:
        return
    try:
        result = function(spider)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise ConfigError(
            f"pipeline {type(pipeline).__name__}.{method}() raised {type(exc).__name__}: {exc}"
        ) from exc


def _reason(reason: Any) -> str:
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else "dropped"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _validation_reason(exc: Exception) -> str | None:
    """The drop reason of a pydantic ValidationError ("Model.field: message"), else None."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(exc, pydantic.ValidationError):
        return None
    errors = exc.errors()
    if not errors:
        return _reason(f"{exc.title}: invalid")
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return _reason(f"{exc.title}.{where}: {first.get('msg', 'invalid')}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if _is_item(value):
        return _adapter()(value).asdict()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def is_item(output: Any) -> bool:
    """Whether a callback's output is an item (a dict, dataclass, attrs or pydantic object)."""
    return isinstance(output, dict) or (not isinstance(output, type) and _is_item(output))


def item_json(item: Any, url: str) -> str:
    """An item as JSON text (an object); anything else is a SpiderError."""
    if not isinstance(item, dict):
        if isinstance(item, type) or not _is_item(item):
            raise SpiderError(
                url,
                f"an item must be a dict, dataclass, attrs or pydantic object, got "
                f"{type(item).__name__}",
            )
        item = _adapter()(item).asdict()
    try:
        return json.dumps(item, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SpiderError(url, f"item is not JSON-serializable: {exc}") from exc


def _adapter() -> Any:
    """itemadapter's ItemAdapter, imported on first use: it imports attrs and pydantic when
    they are installed (~50 ms), which a crawl of dict items never needs."""
    from itemadapter import ItemAdapter

    return ItemAdapter


def _is_item(value: Any) -> bool:
    return bool(_adapter().is_item(value))
