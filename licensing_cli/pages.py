"""Walking paginated lists (AIP-158: page_token in, next_page_token out)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

MAX_PAGES = 10_000


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
