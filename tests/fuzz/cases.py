"""Whole requests for one RPC: a realistic request with one or several fields replaced by
hostile values, or bytes no client library would produce (invalid UTF-8 in a string,
wrong wire types, truncations, random bytes), each saying what is hostile about it."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tests.fuzz.corpus import Corpus, is_map
from tests.fuzz.values import (
    FIELD_MASK,
    INVALID_UTF8,
    TIMESTAMP,
    Draw,
    Values,
    assign,
    is_message,
    new_message,
    preview,
    type_of,
)

F = FieldDescriptor
MODES = {  # mode: weight
    "realistic": 10,
    "one-hostile-field": 45,
    "many-hostile-fields": 13,
    "invalid-utf8": 12,
    "malformed-bytes": 13,
    "replay": 7,
}
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Slot:
    """Where a field sits in a request: the message fields (and list indexes) above it."""

    steps: tuple[tuple[FieldDescriptor, int | None], ...]
    field: FieldDescriptor

    @property
    def name(self) -> str:
        """The field's path without list indexes ("plan.prices.unit_price.amount_minor")."""
        return ".".join([*(f.name for f, _ in self.steps), self.field.name])

    def parent(self, request: Message) -> Message:
        message = request
        for step, index in self.steps:
            message = getattr(message, step.name)
            if index is not None:
                message = message[index]
        return message

    def numbers(self) -> list[int]:
        return [*(f.number for f, _ in self.steps), self.field.number]


def slots(
    message: Message, steps: tuple[tuple[FieldDescriptor, int | None], ...] = ()
) -> Iterator[Slot]:
    """Every field of `message`, and of the messages inside it (set or not)."""
    for field in message.DESCRIPTOR.fields:
        yield Slot(steps, field)
        if not is_message(field) or type_of(field) in (TIMESTAMP, FIELD_MASK) or len(steps) > 3:
            continue
        if field.is_repeated:
            for index, item in enumerate(getattr(message, field.name)):
                yield from slots(item, (*steps, (field, index)))
        else:
            yield from slots(getattr(message, field.name), (*steps, (field, None)))


@dataclass
class Mutation:
    slot: Slot
    draw: Draw

    def apply(self, request: Message) -> None:
        assign(self.slot.parent(request), self.slot.field, self.draw.value)

    @property
    def label(self) -> str:
        return f"{self.slot.name} = {self.draw.kind} ({self.draw.detail})"


@dataclass
class Case:
    """One request: its bytes and what is hostile about them."""

    number: int
    mode: str
    baseline: Message  # the realistic request the hostile values replace fields of
    mutations: list[Mutation] = dataclasses.field(default_factory=list)
    wire: str = ""  # what was done to the encoded bytes, if anything
    payload: bytes = b""
    origin: str = ""  # for a replay or a narrowed case: the case it came from
    request: Message = dataclasses.field(init=False)  # as sent, before any edit of its bytes

    def __post_init__(self) -> None:
        self.request = self.baseline

    @property
    def attribution(self) -> str:
        """Field and value kind to blame (for several hostile fields, all of them)."""
        parts = [m.label for m in self.mutations]
        if self.wire:
            parts.append(self.wire)
        text = "; ".join(parts) or "a realistic request"
        return f"{text} [{self.origin}]" if self.origin else text

    @property
    def blame(self) -> tuple[str, ...]:
        """The attribution without values, to tell distinct problems apart."""
        kinds = [f"{m.slot.name}={m.draw.kind}" for m in self.mutations]
        return (*kinds, self.wire.split(" (")[0]) if self.wire else tuple(kinds)

    def show(self, limit: int = 600) -> str:
        if self.wire and self.wire.startswith("whole request"):
            return f"bytes {self.payload[: limit // 2].hex()}" + (
                f"... ({len(self.payload)} bytes)" if len(self.payload) > limit // 2 else ""
            )
        text = text_format.MessageToString(self.request, as_one_line=True)
        more = f"... ({len(text)} chars)" if len(text) > limit else ""
        suffix = f" + {self.wire}" if self.wire else ""
        return text[:limit] + more + suffix


class CaseMaker:
    """Requests for one RPC, drawn from `rng`, with realistic values from `corpus`."""

    def __init__(
        self,
        request_type: Descriptor,
        corpus: Corpus,
        rng: random.Random,
        other_types: list[Descriptor],
    ) -> None:
        self.request_type = request_type
        self.corpus = corpus
        self.rng = rng
        self.other_types = other_types
        self.sent: dict[str, list[str]] = {}
        self.history: list[Case] = []

    def values(self) -> Values:
        companies = self.corpus.companies
        roll = self.rng.random()
        if companies and roll < 0.6:
            company = companies[0]
        elif len(companies) > 1 and roll < 0.85:
            company = companies[1]
        elif companies and roll < 0.95:
            company = self.rng.choice(companies)
        else:
            company = ""
        values = Values(self.rng, self.corpus, company, self.sent)
        if not company:
            values.company = values.uuid()
        return values

    def make(self, number: int) -> Case:
        mode = self.rng.choices(list(MODES), weights=list(MODES.values()))[0]
        if mode == "replay" and self.history:
            earlier = self.rng.choice(self.history)
            case = Case(
                number,
                mode,
                earlier.baseline,
                earlier.mutations,
                earlier.wire,
                earlier.payload,
                f"replay of #{earlier.number}",
            )
            case.request = earlier.request
        else:
            case = self.build(number, "realistic" if mode == "replay" else mode)
        self.remember(case)
        return case

    def build(self, number: int, mode: str) -> Case:
        values = self.values()
        baseline = new_message(self.request_type)
        values.fill(baseline, 0)
        case = Case(number, mode, baseline)
        every = list(slots(baseline))
        if mode == "one-hostile-field":
            case.mutations = [self.mutation(values, baseline, self.rng.choice(every))]
        elif mode == "many-hostile-fields":
            chosen = [s for s in every if self.rng.random() < 0.3] or [self.rng.choice(every)]
            case.mutations = [self.mutation(values, baseline, s) for s in chosen]
        self.assemble(case)
        if mode == "invalid-utf8":
            self.invalid_utf8(case, values, [s for s in every if is_text(s)])
        elif mode == "malformed-bytes":
            self.malformed(case, values)
        return case

    def assemble(self, case: Case) -> Case:
        """Applies the case's hostile values to a copy of its baseline, and encodes it."""
        case.request = type(case.baseline)()
        case.request.CopyFrom(case.baseline)
        for mutation in case.mutations:
            try:
                mutation.apply(case.request)
            except IndexError:  # an earlier mutation emptied the list this slot was in
                continue
        case.payload = case.request.SerializeToString()
        return case

    def mutation(self, values: Values, request: Message, slot: Slot) -> Mutation:
        current = getattr(slot.parent(request), slot.field.name)
        if is_message(slot.field) and not slot.field.is_repeated:
            current = current if slot.parent(request).HasField(slot.field.name) else None
        return Mutation(slot, values.hostile(slot.field, slot.parent(request).DESCRIPTOR, current))

    def invalid_utf8(self, case: Case, values: Values, text_slots: list[Slot]) -> None:
        """A string field whose bytes are not UTF-8: appended after the valid encoding, so
        it overrides the field (a message field met twice is merged; a list gains an item)."""
        if not text_slots:
            self.malformed(case, values)
            return
        slot = self.rng.choice(text_slots)
        current = getattr(slot.parent(case.request), slot.field.name)
        text = (current[0] if slot.field.is_repeated and current else current) or ""
        bad = values.insert_bytes(str(text).encode(), self.rng.choice(INVALID_UTF8))
        case.payload += nested(slot.numbers(), bad)
        case.wire = f"{slot.name} = invalid-utf8 ({preview(bad)})"

    def malformed(self, case: Case, values: Values) -> None:
        """Bytes that are not a valid encoding of the request (or of this request type)."""
        rng = self.rng
        base = case.payload
        fields = list(self.request_type.fields)
        number = rng.choice(fields).number if fields else 1
        other = rng.choice(self.other_types)
        edits: list[tuple[str, Any]] = [
            ("random-bytes", lambda: rng.randbytes(rng.randint(1, 256))),
            ("truncated", lambda: base[: rng.randrange(len(base))] if base else b"\x0a"),
            ("flipped-byte", lambda: flip(rng, base) if base else b"\xff"),
            ("wrong-wire-type", lambda: base + wrong_wire_type(rng, self.request_type)),
            ("length-past-end", lambda: base + tag(number, _WIRE_LEN) + varint(2**31) + b"x"),
            ("overlong-varint", lambda: base + tag(number, _WIRE_VARINT) + b"\xff" * 10 + b"\x01"),
            ("invalid-wire-type", lambda: base + tag(number, rng.choice([6, 7]))),
            ("field-number-zero", lambda: base + b"\x00\x01"),
            ("unterminated-group", lambda: base + tag(number, 3)),
            ("another-request-type", lambda: another(values, other)),
        ]
        kind, make = rng.choice(edits)
        case.payload = make()
        detail = other.name if kind == "another-request-type" else f"{len(case.payload)} bytes"
        case.wire = f"whole request = {kind} ({detail})"

    def remember(self, case: Case) -> None:
        self.history = [*self.history[-19:], case]
        for slot in slots(case.request):
            if slot.field.cpp_type != F.CPPTYPE_STRING or slot.field.type == F.TYPE_BYTES:
                continue
            if slot.field.is_repeated or is_map(slot.field):
                continue
            try:
                value = getattr(slot.parent(case.request), slot.field.name)
            except IndexError:
                continue
            if value and len(value) <= 100:
                kept = self.sent.setdefault(slot.field.name, [])
                if value not in kept:
                    kept[:] = [*kept[-15:], value]

    def with_mutations(self, case: Case, mutations: list[Mutation]) -> Case:
        """`case`'s realistic request with only `mutations` (to find which of several
        hostile fields is to blame)."""
        return self.assemble(
            Case(
                case.number,
                "one-hostile-field",
                case.baseline,
                mutations,
                origin=f"narrowed from #{case.number}",
            )
        )


def is_text(slot: Slot) -> bool:
    return slot.field.type == F.TYPE_STRING and not is_map(slot.field)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def nested(numbers: list[int], value: bytes) -> bytes:
    """The encoding of a length-delimited `value` at field path `numbers`."""
    record = tag(numbers[-1], _WIRE_LEN) + varint(len(value)) + value
    for number in reversed(numbers[:-1]):
        record = tag(number, _WIRE_LEN) + varint(len(record)) + record
    return record


def flip(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ rng.randint(1, 255)]) + data[at + 1 :]


def wrong_wire_type(rng: random.Random, request_type: Descriptor) -> bytes:
    """A known field encoded with another wire type than its own."""
    if not request_type.fields:
        return tag(1, _WIRE_I64) + b"\x00" * 8
    field = rng.choice(request_type.fields)
    length_delimited = field.cpp_type in (F.CPPTYPE_STRING, F.CPPTYPE_MESSAGE)
    if length_delimited:
        return tag(field.number, _WIRE_VARINT) + varint(rng.getrandbits(40))
    wire = rng.choice([_WIRE_I64, _WIRE_I32] if field.is_repeated else [_WIRE_LEN, _WIRE_I64])
    if wire == _WIRE_LEN:  # (legal on a repeated scalar: a packed list)
        return tag(field.number, wire) + varint(3) + b"abc"
    return tag(field.number, wire) + (b"\x01" * (8 if wire == _WIRE_I64 else 4))


def another(values: Values, descriptor: Descriptor) -> bytes:
    message = new_message(descriptor)
    values.fill(message, 0)
    return message.SerializeToString()
