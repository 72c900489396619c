"""Page sizes and opaque page tokens (AIP-158): a token encodes the last key seen."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from libs.common.errors import DomainError, invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    if value < 0:
        raise invalid("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode()


def not_issued() -> DomainError:
    """The refusal of a page token that this service did not issue."""
    return invalid("page_token", "is not a token this service issued")


def decode_token(token: str) -> list[Any] | None:
    """The key of a token from `encode_token`, or None for the first page."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise not_issued() from None
    if not isinstance(key, list):
        raise not_issued()
    return key


def single_key(token: str, parse: Callable[[Any], T]) -> T | None:
    """The one value of a token from `encode_token([value])` as `parse` reads it (its
    ValueError or TypeError: not a token we issued), or None for the first page."""
    key = decode_token(token)
    if key is None:
        return None
    if len(key) != 1:
        raise not_issued()
    try:
        return parse(key[0])
    except (ValueError, TypeError):
        raise not_issued() from None


def key_uuid(value: Any) -> uuid.UUID:
    """A UUID held in a page token (as its text)."""
    return uuid.UUID(str(value))


def time_key_token(at: datetime, ident: uuid.UUID | str) -> str:
    """The token of a page that ends at (at, ident): lists ordered by time, then id."""
    return encode_token([at.isoformat(), str(ident)])


def time_key(token: str) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a `time_key_token` token ends at, or None for the first page."""
    return time_and(token, key_uuid)


def time_and(token: str, ident: Callable[[Any], T]) -> tuple[datetime, T] | None:
    """The (time, id) a token of `encode_token([time.isoformat(), id])` ends at, its id as
    `ident` reads it, or None for the first page."""
    key = decode_token(token)
    if not key:
        return None
    try:
        return datetime.fromisoformat(str(key[0])), ident(key[1])
    except (ValueError, IndexError, TypeError):
        raise not_issued() from None
