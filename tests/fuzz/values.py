"""Values for a field of any protobuf type: a realistic one (learned from real traffic, or
plausible), or a hostile one at or past a boundary, named by its kind for the findings."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tests.fuzz.corpus import Corpus, is_map, names_for

F = FieldDescriptor
TIMESTAMP = "google.protobuf.Timestamp"
FIELD_MASK = "google.protobuf.FieldMask"
INT_RANGES = {
    F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    F.CPPTYPE_UINT32: (0, 2**32 - 1),
    F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
INT_EDGES = (0, -1, 1, 2, 10_000, 10_001, 2**31 - 1, -(2**31), 2**31, 2**32, 2**53 + 1, -(2**53))
# Timestamp's documented range is 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN, TIMESTAMP_MAX = -62_135_596_800, 253_402_300_799
HOSTILE_TIMESTAMPS = (
    ("timestamp-before-year-1", TIMESTAMP_MIN - 1, 0),
    ("timestamp-after-year-9999", TIMESTAMP_MAX + 1, 0),
    ("timestamp-seconds-int64-max", 2**63 - 1, 0),
    ("timestamp-seconds-int64-min", -(2**63), 0),
    ("timestamp-nanos-negative", 1_768_478_400, -1),
    ("timestamp-nanos-over-999999999", 1_768_478_400, 1_000_000_000),
    ("timestamp-nanos-int32-max", 0, 2**31 - 1),
    ("timestamp-first-valid-instant", TIMESTAMP_MIN, 0),
    ("timestamp-last-valid-instant", TIMESTAMP_MAX, 999_999_999),
    ("timestamp-epoch", 0, 0),
    ("timestamp-before-epoch", -1, 999_999_999),
)
NOW = 1_768_478_400  # 2026-01-15T12:00:00Z, the tests' fake clock
CONTROL = [chr(c) for c in range(1, 32)] + ["\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
UNICODE = ["😀", "e\u0301", "\u202e", "\u200b", "\ufeff", "\ufffd", "\uffff", "\U0010ffff"]
UNICODE += ["Ω", "İ", "ß", "日本語", "\uff35", "\u0661\u0662"]
NUMERIC = ["0", "-1", "+1", "1e309", "NaN", "Infinity", "9" * 40, "0x1F", "1_000", "\uff11\uff12"]
SQL_AND_PATTERNS = ["'", '"', "' OR '1'='1", "'; DROP TABLE t; --", "%", "_", "\\", "%_\\%", "$1"]
DATES = ["2026-01", "2026-13", "2026-00", "0000-01", "0001-01", "9999-12", "10000-01"]
DATES += ["-0001-01", "2026-1", "2026-01-15", "2026/01", "2026-01 "]
UUID_SHAPES = ("nil", "max", "upper", "braces", "no-dashes", "urn", "short", "long", "spaced")
INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]
INVALID_UTF8.append(b"\xf4\x90\x80\x80")
WORDS = ["alpha", "Ann", "x", "hq", "USD", "connect", "2026-01", "101", "+6567891230"]


@dataclass
class Draw:
    """One chosen value and what kind of value it is."""

    kind: str
    value: Any
    detail: str = ""


def is_message(field: FieldDescriptor) -> bool:
    return field.cpp_type == F.CPPTYPE_MESSAGE and not is_map(field)


def type_of(field: FieldDescriptor) -> str:
    return field.message_type.full_name if field.message_type else ""


def preview(value: Any, limit: int = 60) -> str:
    if isinstance(value, Message):
        text = " ".join(str(value).split())
    elif isinstance(value, list):
        text = f"[{len(value)} items: {', '.join(preview(v, 20) for v in value[:3])}...]"
    else:
        text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class Values:
    """Values for the fields of one request, as a caller of `company` would send them."""

    def __init__(
        self, rng: random.Random, corpus: Corpus, company: str, sent: dict[str, list[str]]
    ) -> None:
        self.rng = rng
        self.corpus = corpus
        self.company = company
        self.sent = sent  # strings sent earlier by this campaign, by field name

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # --- realistic ---------------------------------------------------------------------

    def realistic(self, field: FieldDescriptor, parent: Descriptor, depth: int = 0) -> Any:
        """A plausible value for `field` (one element, for a repeated field)."""
        names = names_for(field)
        rng = self.rng
        if is_map(field):
            entry = field.message_type
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return {
                self.realistic(key, entry, depth): self.realistic(value, entry, depth)
                for _ in range(rng.randint(0, 2))
            }
        if is_message(field):
            return self.realistic_message(field, parent, depth)
        if field.cpp_type == F.CPPTYPE_STRING and field.type == F.TYPE_BYTES:
            found = self.corpus.pick(rng, self.company, names, lambda v: isinstance(v, bytes))
            return found if found is not None else b""
        if field.cpp_type == F.CPPTYPE_STRING:
            if field.name == "company_id":
                return self.company
            is_id = names[-1].endswith("_id")
            if is_id and rng.random() < 0.15:
                return self.uuid()  # a new entity's id (an office that has no plan yet, ...)
            found = self.corpus.pick(rng, self.company, names, lambda v: isinstance(v, str))
            if found is not None:
                return found
            if is_id:
                return self.uuid()
            return "" if rng.random() < 0.7 else rng.choice(WORDS)  # optional, mostly
        if field.cpp_type == F.CPPTYPE_ENUM:
            numbers = [v.number for v in field.enum_type.values]
            found = self.corpus.pick(rng, self.company, names, lambda v: v in numbers)
            return found if found is not None else rng.choice([n for n in numbers if n] or numbers)
        if field.cpp_type == F.CPPTYPE_BOOL:
            return rng.random() < 0.5
        if field.cpp_type in INT_RANGES:
            low, high = INT_RANGES[field.cpp_type]
            found = self.corpus.pick(
                rng,
                self.company,
                names,
                lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            )
            return found if found is not None else rng.randint(max(low, 0), 3)
        return rng.uniform(0, 100)  # float, double

    def realistic_message(self, field: FieldDescriptor, parent: Descriptor, depth: int) -> Message:
        message_type = field.message_type
        full_name = message_type.full_name
        learned = self.corpus.pick(
            self.rng,
            self.company,
            [*names_for(field), f"<{full_name}>"],
            lambda v: isinstance(v, Message) and v.DESCRIPTOR.full_name == full_name,
        )
        message = new_message(message_type)
        if full_name == FIELD_MASK:
            candidates = mask_candidates(parent)
            count = min(len(candidates), self.rng.choice([1, 1, 2]))
            message.paths.extend(self.rng.sample(candidates, count))
            return message
        if learned is not None and (full_name == TIMESTAMP or self.rng.random() < 0.5):
            message.CopyFrom(learned)
            return message
        if full_name == TIMESTAMP:
            message.seconds = NOW + self.rng.randint(-90, 90) * 86_400
            return message
        self.fill(message, depth + 1)
        return message

    def fill(self, message: Message, depth: int) -> None:
        """Sets each field of `message` to a realistic value (nearly all of them: callers
        leave optional fields out too, more often deeper down)."""
        descriptor = message.DESCRIPTOR
        presence = 0.95 if depth == 0 else 0.8
        for field in descriptor.fields:
            if depth > 3 or self.rng.random() > presence:
                continue
            if field.is_repeated and not is_map(field):
                count = self.rng.choice([0, 1, 1, 2, 3])
                assign(
                    message, field, [self.realistic(field, descriptor, depth) for _ in range(count)]
                )
            else:
                assign(message, field, self.realistic(field, descriptor, depth))

    # --- hostile -----------------------------------------------------------------------

    def hostile(self, field: FieldDescriptor, parent: Descriptor, current: Any) -> Draw:
        """A value at or past a boundary for `field`, given the realistic `current` one."""
        if field.is_repeated and not is_map(field):
            return self.hostile_list(field, parent, current)
        if is_map(field):
            return self.hostile_map(field, parent)
        if is_message(field):
            return self.hostile_message(field, parent, current)
        return self.hostile_scalar(field, parent, current)

    def hostile_scalar(self, field: FieldDescriptor, parent: Descriptor, current: Any) -> Draw:
        if field.cpp_type == F.CPPTYPE_STRING and field.type == F.TYPE_BYTES:
            return self.hostile_bytes(current if isinstance(current, bytes) else b"")
        if field.cpp_type == F.CPPTYPE_STRING:
            text = (
                current if isinstance(current, str) and current else self.realistic(field, parent)
            )
            return self.hostile_string(field, text)
        if field.cpp_type == F.CPPTYPE_ENUM:
            return self.hostile_enum(field)
        if field.cpp_type == F.CPPTYPE_BOOL:
            return Draw("bool-flipped", not current, str(not current))
        if field.cpp_type in INT_RANGES:
            return self.hostile_int(field)
        value = self.rng.choice(
            [math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324]
        )
        return Draw("float-special", value, repr(value))

    def hostile_string(self, field: FieldDescriptor, text: str) -> Draw:
        rng = self.rng
        draws: list[tuple[str, Any]] = [
            ("empty-string", lambda: ""),
            ("nul-character", lambda: self.insert(text, "\x00")),
            ("control-character", lambda: self.insert(text, rng.choice(CONTROL))),
            ("whitespace", lambda: rng.choice([" ", "\t", "\n", f" {text} ", f"{text}\n"])),
            ("unusual-unicode", lambda: self.insert(text, rng.choice(UNICODE))),
            ("long-string", lambda: self.long_string(text)),
            ("unknown-uuid", self.uuid),
            ("uuid-variant", lambda: self.uuid_variant(text)),
            ("numeric-text", lambda: rng.choice(NUMERIC)),
            ("sql-or-pattern", lambda: self.insert(text, rng.choice(SQL_AND_PATTERNS))),
            ("date-like-text", lambda: rng.choice(DATES)),
            ("random-text", self.random_text),
        ]
        elsewhere = self.corpus.pick_elsewhere(
            rng, self.company, names_for(field), lambda v: isinstance(v, str)
        )
        if elsewhere is not None and field.name != "company_id":
            draws.append(("other-company-value", lambda: elsewhere))
        if self.sent.get(field.name):
            draws.append(("value-sent-before", lambda: rng.choice(self.sent[field.name])))
        kind, make = rng.choice(draws)
        value = make()
        return Draw(kind, value, preview(value))

    def insert(self, text: str, piece: str) -> str:
        if not text or self.rng.random() < 0.25:
            return piece
        at = self.rng.randint(0, len(text))
        return text[:at] + piece + text[at:]

    def long_string(self, text: str) -> str:
        length = self.rng.choices([257, 1_025, 65_537, 1_048_577], weights=[4, 3, 2, 1])[0]
        return (text or "x") * (length // max(len(text), 1)) + "y" * (length % max(len(text), 1))

    def uuid_variant(self, text: str) -> str:
        try:
            base = str(uuid.UUID(text))
        except ValueError:
            base = self.uuid()
        shape = self.rng.choice(UUID_SHAPES)
        return {
            "nil": "00000000-0000-0000-0000-000000000000",
            "max": "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "upper": base.upper(),
            "braces": "{" + base + "}",
            "no-dashes": base.replace("-", ""),
            "urn": "urn:uuid:" + base,
            "short": base[:-1],
            "long": base + "0",
            "spaced": f" {base}",
        }[shape]

    def random_text(self) -> str:
        ranges = [(0x20, 0x7E), (0x80, 0x2FF), (0x3000, 0x30FF), (0xE000, 0xFFFF)]
        ranges.append((0x10000, 0x10FFFF))
        chars = []
        for _ in range(self.rng.randint(1, 40)):
            low, high = self.rng.choice(ranges)
            chars.append(chr(self.rng.randint(low, high)))
        return "".join(chars)

    def hostile_bytes(self, data: bytes) -> Draw:
        rng = self.rng
        lines = data.splitlines(keepends=True)
        draws: list[tuple[str, Any]] = [
            ("empty-bytes", lambda: b""),
            ("random-bytes", lambda: rng.randbytes(rng.randint(1, 256))),
            ("long-random-bytes", lambda: rng.randbytes(rng.choice([65_537, 1_048_577]))),
            ("nul-byte", lambda: self.insert_bytes(data, b"\x00")),
            ("invalid-utf8-bytes", lambda: self.insert_bytes(data, rng.choice(INVALID_UTF8))),
            ("truncated-bytes", lambda: data[: rng.randrange(len(data))] if data else b"\xef\xbb"),
            ("utf16-text", lambda: data.decode("utf-8", "replace").encode("utf-16")),
            ("only-line-breaks", lambda: rng.choice([b"\r\n" * 3, b"\n", b"\r", b"\xef\xbb\xbf"])),
        ]
        if len(lines) > 1:
            many = lambda: lines[0] + b"".join(lines[1:]) * (10_001 // (len(lines) - 1) + 1)  # noqa: E731
            draws.append(("many-lines", many))
        kind, make = rng.choice(draws)
        value = make()
        return Draw(kind, value, preview(value))

    def insert_bytes(self, data: bytes, piece: bytes) -> bytes:
        at = self.rng.randint(0, len(data))
        return data[:at] + piece + data[at:]

    def hostile_int(self, field: FieldDescriptor) -> Draw:
        low, high = INT_RANGES[field.cpp_type]
        value = self.rng.choice(
            [*INT_EDGES, low, high, low + 1, high - 1, self.rng.randint(low, high)]
        )
        value = min(max(value, low), high)
        kind = (
            "int-type-min" if value == low and low else
            "int-type-max" if value == high else
            "zero" if value == 0 else
            "negative" if value < 0 else
            "positive-edge"
        )  # fmt: skip
        return Draw(kind, value, str(value))

    def hostile_enum(self, field: FieldDescriptor) -> Draw:
        numbers = [v.number for v in field.enum_type.values]
        if getattr(field.enum_type, "is_closed", False) or self.rng.random() < 0.3:
            return Draw("enum-unspecified", 0, "0") if 0 in numbers else self.hostile_int(field)
        value = self.rng.choice([max(numbers) + 1, 99, -1, 2**31 - 1, -(2**31)])
        return Draw("enum-undefined-number", value, str(value))

    def hostile_message(self, field: FieldDescriptor, parent: Descriptor, current: Any) -> Draw:
        full_name = type_of(field)
        if self.rng.random() < 0.15:
            return Draw("absent-message", None, "not set")
        if full_name == TIMESTAMP:
            kind, seconds, nanos = self.rng.choice(HOSTILE_TIMESTAMPS)
            stamp = new_message(field.message_type)
            stamp.seconds, stamp.nanos = seconds, nanos
            return Draw(kind, stamp, f"seconds={seconds} nanos={nanos}")
        if full_name == FIELD_MASK:
            return self.hostile_mask(field, parent)
        return Draw("empty-message", new_message(field.message_type), "{}")

    def hostile_mask(self, field: FieldDescriptor, parent: Descriptor) -> Draw:
        candidates = mask_candidates(parent)
        string_field = field.message_type.fields_by_name["paths"]
        options = [
            ("mask-unknown-path", ["no_such_field"]),
            ("mask-nested-path", [f"{self.rng.choice(candidates)}.no_such_field"]),
            ("mask-empty-path", [""]),
            ("mask-wildcard", ["*"]),
            ("mask-repeated-path", [candidates[0], candidates[0]]),
            ("mask-every-field", candidates),
        ]
        kind, paths = self.rng.choice(options)
        if self.rng.random() < 0.3:
            draw = self.hostile_string(string_field, self.rng.choice(candidates))
            kind, paths = f"mask-path-{draw.kind}", [draw.value]
        mask = new_message(field.message_type)
        mask.paths.extend(paths)
        return Draw(kind, mask, preview(paths))

    def hostile_list(self, field: FieldDescriptor, parent: Descriptor, current: Any) -> Draw:
        items = list(current or [])
        rng = self.rng
        one = lambda: self.realistic(field, parent)  # noqa: E731
        choice = rng.choice(["empty", "long", "duplicates", "one-bad"])
        if choice == "empty" or (choice == "one-bad" and is_message(field)):
            return Draw("empty-list", [], "[]")
        if choice == "long":
            length = rng.choices([101, 1_001, 10_001], weights=[5, 3, 1])[0]
            distinct = [one() for _ in range(10)]
            value = [distinct[i % 10] for i in range(length)]
            return Draw("long-list", value, f"{length} items")
        if choice == "duplicates":
            item = items[0] if items else one()
            return Draw("duplicate-items", [item, item, item], preview([item, item, item]))
        bad = self.hostile_scalar(field, parent, items[0] if items else None)
        items.insert(rng.randint(0, len(items)), bad.value)
        return Draw(f"list-item-{bad.kind}", items, bad.detail)

    def hostile_map(self, field: FieldDescriptor, parent: Descriptor) -> Draw:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        key = self.hostile_scalar(key_field, field.message_type, None)
        value = self.realistic(value_field, field.message_type)
        return Draw(f"map-key-{key.kind}", {key.value: value}, key.detail)


def new_message(descriptor: Descriptor) -> Message:
    return message_factory.GetMessageClass(descriptor)()


def mask_candidates(parent: Descriptor) -> list[str]:
    """Paths an update mask of `parent` could name: the fields of its other messages."""
    names = [
        f.name
        for sibling in parent.fields
        if is_message(sibling) and type_of(sibling) not in (FIELD_MASK, TIMESTAMP)
        for f in sibling.message_type.fields
    ]
    return names or ["name"]


def assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    """Sets `field` of `message` to `value` (None clears a message; a list replaces a
    repeated field; a dict replaces a map)."""
    if is_map(field):
        entries = getattr(message, field.name)
        entries.clear()
        for key, item in value.items():
            if isinstance(item, Message):
                entries[key].CopyFrom(item)
            else:
                entries[key] = item
    elif field.is_repeated:
        items = getattr(message, field.name)
        del items[:]
        if is_message(field):
            for item in value:
                items.add().CopyFrom(item)
        else:
            items.extend(value)
    elif is_message(field):
        if value is None:
            message.ClearField(field.name)
        else:
            getattr(message, field.name).CopyFrom(value)
            getattr(message, field.name).SetInParent()
    else:
        setattr(message, field.name, value)
