"""Page sizes and opaque page tokens (AIP-158): a token encodes the last key seen."""

from __future__ import annotations

import base64
import json
from typing import Any

from libs.common.errors import invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    if value < 0:
        raise invalid("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode()


def decode_token(token: str) -> list[Any] | None:
    """The key of a token from `encode_token`, or None for the first page."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise invalid("page_token", "is not a token this service issued") from None
    if not isinstance(key, list):
        raise invalid("page_token", "is not a token this service issued")
    return key
