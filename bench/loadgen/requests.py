"""Request templates compiled to bytes for the generator, and response field paths.

A template is a dict in the message's JSON form (proto field names). In its strings,
`{{choice.KEY}}` takes KEY of one item of the choices (a string that is nothing but the
placeholder takes the value as it is, number or list), and `{{uuid}}` becomes a fresh
UUID on every call. Each choice is serialized once here, with a 36-byte marker where
every UUID goes; the generator copies the bytes and overwrites the markers per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")
_UUID_LENGTH = 36


@dataclass(frozen=True)
class CompiledRequests:
    """One serialized request per choice, and where its fresh UUIDs go."""

    requests: tuple[bytes, ...]
    uuid_offsets: tuple[tuple[int, ...], ...]


class _Filler:
    """Fills one template for one choice, numbering UUID markers."""

    def __init__(self, choice: Mapping[str, Any]) -> None:
        self.choice = choice
        self.markers: list[str] = []

    def _value(self, name: str) -> Any:
        if name == "uuid":
            marker = f"~uuid~{len(self.markers):030d}"
            self.markers.append(marker)
            return marker
        if name.startswith("choice."):
            key = name.removeprefix("choice.")
            if key not in self.choice:
                raise KeyError(f"template: {{{{{name}}}}} but the choice has no {key!r}")
            return self.choice[key]
        raise KeyError(f"template: unknown placeholder {{{{{name}}}}}")

    def fill(self, node: Any) -> Any:
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole:
                return self._value(whole.group(1))
            return _PLACEHOLDER.sub(lambda m: str(self._value(m.group(1))), node)
        if isinstance(node, Mapping):
            return {key: self.fill(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [self.fill(item) for item in node]
        return node


def compile_requests(
    message_type: type[Message],
    template: Mapping[str, Any],
    choices: Sequence[Mapping[str, Any]] = (),
) -> CompiledRequests:
    """Serializes the template once per choice (once if there are none)."""
    requests: list[bytes] = []
    offsets: list[tuple[int, ...]] = []
    for choice in choices or ({},):
        filler = _Filler(choice)
        filled = filler.fill(template)
        data = json_format.ParseDict(filled, message_type()).SerializeToString()
        positions = []
        for marker in filler.markers:
            position = data.find(marker.encode())
            if position < 0 or len(marker) != _UUID_LENGTH:
                raise ValueError(f"template: {{{{uuid}}}} must be inside a string field ({marker})")
            positions.append(position)
        requests.append(data)
        offsets.append(tuple(positions))
    return CompiledRequests(tuple(requests), tuple(offsets))


def field_numbers(descriptor: Any, path: str) -> list[int]:
    """The field numbers of a dotted path of field names ("units.unit_id" -> [1, 1])."""
    numbers: list[int] = []
    current: Descriptor | None = descriptor  # a protobuf Descriptor (upb or Python)
    for name in path.split("."):
        if current is None or name not in current.fields_by_name:
            raise KeyError(f"no field {name!r} on the path {path!r}")
        field = current.fields_by_name[name]
        numbers.append(field.number)
        current = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    if current is not None:
        raise ValueError(f"{path!r} ends at a message; the generator collects strings")
    return numbers
