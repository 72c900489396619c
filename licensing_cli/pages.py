"""Walking paginated lists (AIP-158: page_token in, next_page_token out)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from licensing_cli.clients import Endpoint
from licensing_cli.options import Paging

MAX_PAGES = 10_000

ItemT = TypeVar("ItemT")


def every_page(fetch: Callable[[str], Any], first_token: str = "") -> Iterator[Any]:
    """Yields responses from `fetch(page_token)` until next_page_token is empty."""
    token = first_token
    for _ in range(MAX_PAGES):
        page = fetch(token)
        yield page
        token = page.next_page_token
        if not token:
            return
    raise RuntimeError("more than 10000 pages: narrow the filters")


def pages(fetch: Callable[[str], Any], token: str, follow: bool) -> Iterator[Any]:
    """One page from `token`, or every page from it when `follow`."""
    if follow:
        yield from every_page(fetch, token)
    else:
        yield fetch(token)


@dataclass(frozen=True)
class Listed(Generic[ItemT]):
    """The items of the pages read, and the token that continues after them."""

    items: list[ItemT]
    next_page_token: str


def listed(
    endpoint: Endpoint[Any],
    method: Callable[..., Any],
    request: Message,
    field: str,
    paging: Paging,
) -> Listed[Any]:
    """The `field` items of the pages `paging` asks for, each asked for with `request`
    and the page's size and token."""

    def fetch(token: str) -> Any:
        page_request: Any = type(request)()
        page_request.CopyFrom(request)
        page_request.page_size = paging.size
        page_request.page_token = token
        return endpoint.call(method, page_request)

    items: list[Any] = []
    next_token = ""
    for page in pages(fetch, paging.token, paging.follow):
        items.extend(getattr(page, field))
        next_token = page.next_page_token
    return Listed(items, next_token)
