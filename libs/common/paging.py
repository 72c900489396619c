"""Page sizes and opaque page tokens (AIP-158): a token encodes the last key seen."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
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


def time_key_token(at: datetime, ident: uuid.UUID | str) -> str:
    """The token of a page that ends at (at, ident): lists ordered by time, then id."""
    return encode_token([at.isoformat(), str(ident)])


def time_key(token: str) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a `time_key_token` token ends at, or None for the first page."""
    key = decode_token(token)
    if not key:
        return None
    try:
        return datetime.fromisoformat(str(key[0])), uuid.UUID(str(key[1]))
    except (ValueError, IndexError, TypeError):
        raise invalid("page_token", "is not a token this service issued") from None
