"""How results are shown: rich tables for people, stable JSON for scripts.

JSON is protobuf's canonical mapping with the proto field names (snake_case), every field
printed even when it has its default value, and keys sorted, so scripts can rely on it.
Tables, notes and progress go to stdout/stderr through rich; JSON goes to stdout alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from libs.common.currency import is_supported, minor_unit_digits
from licensing_cli.pages import Listed

JsonValue = Any


def to_dict(message: Message) -> dict[str, JsonValue]:
    """A message as a JSON-ready dict with stable keys."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def money(amount_minor: int, currency: str) -> str:
    """`1234, "USD"` -> `$12.34`; `1000, "JPY"` -> `¥1,000`."""
    if not is_supported(currency):
        return f"{amount_minor} {currency or '(no currency)'}"
    digits = minor_unit_digits(currency)
    value = Decimal(amount_minor).scaleb(-digits)
    return str(format_currency(value, currency, locale="en_US"))


def money_of(value: Any) -> str:
    """A billing `Money` message as text ("—" when unset)."""
    if not value.currency_code:
        return "—"
    return money(int(value.amount_minor), str(value.currency_code))


def timestamp(value: Timestamp) -> str:
    """A timestamp as `2026-01-31 12:00:00Z`; "—" when unset."""
    if value.seconds == 0 and value.nanos == 0:
        return "—"
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def enum_name(value: int, names: Callable[[Any], str], prefix: str) -> str:
    """`UNIT_STATE_POOLED` -> `POOLED`."""
    try:
        return names(value).removeprefix(prefix)
    except ValueError:
        return str(value)


@dataclass
class Output:
    """Where a command's result goes."""

    json: bool
    console: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def result(self, data: Message | Mapping[str, JsonValue], show: Callable[[], None]) -> None:
        """Prints `data` as JSON, or calls `show` to render it for people."""
        if self.json:
            payload = to_dict(data) if isinstance(data, Message) else dict(data)
            print(json.dumps(payload, sort_keys=True, indent=2, ensure_ascii=False))
        else:
            show()

    def listing(self, key: str, listed: Listed[Any], show: Callable[[], None]) -> None:
        """Prints a list's items under `key` with its next_page_token, or calls `show`
        and says how to continue when there are more pages."""

        def show_with_more() -> None:
            show()
            if listed.next_page_token:
                self.note(f"More: --page-token {listed.next_page_token}  (or --all)")

        payload = {
            key: [to_dict(item) for item in listed.items],
            "next_page_token": listed.next_page_token,
        }
        self.result(payload, show_with_more)

    def note(self, text: str) -> None:
        """A line for people (stderr in JSON mode, so stdout stays parseable)."""
        (self.err if self.json else self.console).print(text)

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/yellow] {text}")

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        empty: str = "(none)",
    ) -> None:
        listed = [[_cell(cell) for cell in row] for row in rows]
        if not listed:
            self.console.print(f"[bold]{title}[/bold]: {empty}")
            return
        table = Table(title=title, title_justify="left", title_style="bold")
        for column in columns:
            numeric = column.startswith("#") or column.lower() in NUMERIC_COLUMNS
            table.add_column(column.removeprefix("#"), justify="right" if numeric else "left")
        for row in listed:
            table.add_row(*row)
        self.console.print(table)

    def fields(self, title: str, pairs: Iterable[tuple[str, object]]) -> None:
        """A two-column key/value table."""
        table = Table(title=title, title_justify="left", title_style="bold", show_header=False)
        table.add_column(style="dim")
        table.add_column()
        for key, value in pairs:
            table.add_row(key, _cell(value))
        self.console.print(table)


def _cell(value: object) -> Text:
    """Table cells are data, never markup (names and CSV cells are stored verbatim)."""
    return value if isinstance(value, Text) else Text(str(value))


NUMERIC_COLUMNS = frozenset(
    {
        "quantity",
        "units",
        "amount",
        "unit price",
        "assigned",
        "spare",
        "held",
        "pooled",
        "removal",
        "claimable",
        "in grace",
        "records",
        "balance",
        "allowance",
        "allowance left",
        "consumed",
        "overage",
        "row",
        "needed",
        "shortfall",
        "own spare",
        "own returns",
        "pool",
        "total",
    }
)
