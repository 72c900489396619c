"""Rows as domain objects: a dataclass whose fields are named as the row's columns."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Row(Protocol):
    """A database row (asyncpg.Record) or a decoded JSON object: values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return names


def from_row(cls: type[T], row: Row, **values: Any) -> T:
    """The dataclass `cls` of `row`: every field is the column of its name, except those
    given in `values` (columns named otherwise, or that need converting)."""
    fields = {name: row[name] for name in _field_names(cls) if name not in values}
    return cls(**fields, **values)
