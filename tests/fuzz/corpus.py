"""Realistic values, learned from real traffic: what a caller who knows the platform would
send (ids that exist, catalog codes, currencies, timestamps, whole entities), by company
and field name. Requests built from them get past the first checks and reach deeper code."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

# Idempotency keys: a learned one sent again is a replay, not a realistic new request.
NEVER_REUSED = frozenset({"request_id"})
_PER_NAME = 64  # values kept per (company, field name)
_LONGEST = 256  # longer strings are not kept: they are not what a caller usually sends
_LARGEST = 64 * 1024  # bytes values and whole messages larger than this are not kept

Accept = Callable[[Any], bool]


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def names_for(field: FieldDescriptor) -> list[str]:
    """The names a field's values are learned and looked up under: its own, the paging
    convention's ("next_page_token" feeds "page_token"), and the singular of a list
    ("unit_ids" holds "unit_id" values)."""
    names = [field.name]
    if field.name.startswith("next_"):
        names.append(field.name.removeprefix("next_"))
    if field.is_repeated and field.name.endswith("s"):
        names.append(field.name.removesuffix("s"))
    return names


class Corpus:
    def __init__(self) -> None:
        self._values: dict[str, dict[str, list[Any]]] = {}  # company ("" none) -> name -> values
        self._replace = random.Random(0)
        self.companies: list[str] = []

    def learn(self, message: Message, company: str = "") -> None:
        """Remembers every field value of `message`, under the company it belongs to."""
        fields = message.DESCRIPTOR.fields_by_name
        if "company_id" in fields and getattr(message, "company_id", ""):
            company = message.company_id
            if company not in self.companies:
                self.companies.append(company)
        for field, value in message.ListFields():
            if field.name in NEVER_REUSED or is_map(field):
                continue
            items = list(value) if field.is_repeated else [value]
            for item in items:
                if isinstance(item, Message):
                    self.learn(item, company)
                    if item.ByteSize() > _LARGEST:
                        continue
                    kept = type(item)()
                    kept.CopyFrom(item)
                    item = kept
                    self._add(company, f"<{item.DESCRIPTOR.full_name}>", item)
                elif isinstance(item, str | bytes) and len(item) > (
                    _LONGEST if isinstance(item, str) else _LARGEST
                ):
                    continue
                for name in names_for(field):
                    self._add(company, name, item)

    def _add(self, company: str, name: str, value: Any) -> None:
        kept = self._values.setdefault(company, {}).setdefault(name, [])
        if value in kept:
            return
        if len(kept) < _PER_NAME:
            kept.append(value)
        else:
            kept[self._replace.randrange(_PER_NAME)] = value

    def pick(self, rng: random.Random, company: str, names: list[str], accept: Accept) -> Any:
        """A value learned under one of `names`: the company's own first, then values that
        belong to no company, then any company's; None when nothing fits."""
        for bucket in (self._values.get(company, {}), self._values.get("", {})):
            found = _candidates(bucket, names, accept)
            if found:
                return rng.choice(found)
        found = [
            v for bucket in self._other_buckets("") for v in _candidates(bucket, names, accept)
        ]
        return rng.choice(found) if found else None

    def pick_elsewhere(
        self, rng: random.Random, company: str, names: list[str], accept: Accept
    ) -> Any:
        """A value learned under one of `names` in another company: a real id that is not
        this company's."""
        found = [
            v for bucket in self._other_buckets(company) for v in _candidates(bucket, names, accept)
        ]
        return rng.choice(found) if found else None

    def _other_buckets(self, company: str) -> Iterator[dict[str, list[Any]]]:
        for key, bucket in self._values.items():
            if key and key != company:
                yield bucket


def _candidates(bucket: dict[str, list[Any]], names: list[str], accept: Accept) -> list[Any]:
    for name in names:
        found = [v for v in bucket.get(name, ()) if accept(v)]
        if found:
            return found
    return []
