"""Mass configuration of Phone System licenses from a CSV file (docs/product.md, "Mass
configuration").

Columns: `Ext Key`, `Number`, `User`, then any number of `Addon license N` columns.
Reading is tolerant where a spreadsheet program varies (byte-order marks, UTF-16,
comma/semicolon/tab delimiters, header case and spacing, blank rows, extra columns) and
strict where a guess could corrupt data: bytes that are not valid in the file's
encoding are reported (WRONG_ENCODING), never replaced or guessed.

Cells are text and stay text: a cell such as `=HYPERLINK("x")` is stored exactly as
written (only surrounding whitespace is trimmed); nothing here evaluates anything.

Rows are numbered as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.provisioning.domain import catalog
from services.provisioning.domain.extensions import ext_key_problem, number_key, number_problem
from services.provisioning.domain.model import RowIssue

MAX_ROWS = 20_000
MAX_CELL = 256
EXT_KEY, NUMBER, USER = "Ext Key", "Number", "User"
TEMPLATE_ADDON_COLUMNS = 4
_ALIASES = {
    EXT_KEY: {"extkey", "extensionkey", "extension", "ext"},
    NUMBER: {"number", "did", "phonenumber"},
    USER: {"user", "member"},
}
_ADDON_COLUMN = re.compile(r"add(on|ons)(license|licence)?(code)?[0-9]*")
_DELIMITERS = (",", ";", "\t")
_SAMPLES = (
    ("101", "6567891230", "John", "device_ip_phone", "device_mobile_app",
     "license_dnc_checking_enabled", "call_recording"),
    ("102", "6567891231", "Alice", "device_ip_phone", "device_mobile_app",
     "license_dnc_checking_enabled", "call_recording"),
    ("104", "6567891232", "Lucie", "device_ip_phone", "device_desktop_app", "call_recording", ""),
    ("109", "6567891233", "Hallie", "device_ip_phone", "device_desktop_app", "call_recording", ""),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row, cells trimmed but otherwise as written."""

    row: int
    ext_key: str
    number: str
    user: str
    addons: tuple[tuple[str, str], ...]  # (column header, cell) of non-blank add-on cells


@dataclass
class ParsedFile:
    rows: list[CsvRow] = field(default_factory=list)
    errors: list[RowIssue] = field(default_factory=list)
    warnings: list[RowIssue] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # role -> header as written
    # (row, ext key, number) of every row, even rows with other problems: duplicates
    # are reported against the first row that has the value.
    keys: list[tuple[int, str, str]] = field(default_factory=list)

    def column(self, role: str) -> str:
        return self.columns.get(role, role)


class _FileProblem(Exception):
    def __init__(self, reason: str, message: str, row: int = 0) -> None:
        super().__init__(message)
        self.issue = RowIssue(row, "", reason, message)


# --- reading --------------------------------------------------------------------------


def decode(content: bytes) -> str:
    """The file's text. UTF-8 (with or without BOM) and UTF-16/32 with a BOM (or UTF-16
    without one, recognized by its zero bytes) are read; undecodable UTF-8 bytes are kept
    as surrogate escapes so that each bad cell can be reported with its row."""
    if content.startswith(b"PK\x03\x04"):
        raise _FileProblem(
            "NOT_CSV", "this is a spreadsheet workbook (.xlsx), not CSV: save it as 'CSV UTF-8'"
        )
    boms = (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    )
    encoding, body = None, content
    for bom, name in boms:
        if content.startswith(bom):
            encoding, body = name, content[len(bom) :]
            break
    if encoding is None and b"\x00" in content[:4096]:
        head = content[:4096]
        zeros_even = head[0::2].count(0)
        zeros_odd = head[1::2].count(0)
        if zeros_odd > zeros_even:
            encoding = "utf-16-le"
        elif zeros_even > zeros_odd:
            encoding = "utf-16-be"
    if encoding is None or encoding == "utf-8":
        text = body.decode("utf-8", "surrogateescape")
    else:
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError:
            raise _FileProblem(
                "WRONG_ENCODING",
                f"the file claims {encoding.upper()} but is not valid {encoding.upper()}; "
                "save it as 'CSV UTF-8'",
            ) from None
    if "\x00" in text:
        raise _FileProblem(
            "WRONG_ENCODING", "the file contains NUL bytes: it is not a text CSV file"
        )
    return text


def _bad_bytes(cell: str) -> str | None:
    bad = [c for c in cell if "\udc80" <= c <= "\udcff"]
    if not bad:
        return None
    shown = " ".join(f"0x{ord(c) - 0xDC00:02X}" for c in bad[:4])
    return (
        f"contains bytes that are not UTF-8 ({shown}); save the file as 'CSV UTF-8' "
        "(the file was probably saved in a legacy encoding)"
    )


def _fold(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


def _column_role(header: str) -> str | None:
    folded = _fold(header)
    for role, names in _ALIASES.items():
        if folded in names:
            return role
    if _ADDON_COLUMN.fullmatch(folded):
        return "addon"
    return None


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    best, best_score = ",", -1
    for delimiter in _DELIMITERS:
        try:
            header = next(csv.reader([first], delimiter=delimiter), [])
        except csv.Error:
            continue
        score = sum(1 for h in header if _column_role(h) is not None)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def parse(content: bytes, max_rows: int = MAX_ROWS) -> ParsedFile:
    """Reads the file into rows; problems of the file itself and of single cells that
    need no account knowledge (encoding, missing or malformed fields, unknown add-ons,
    duplicates within the file) are reported with their row."""
    parsed = ParsedFile()
    try:
        _parse(content, max_rows, parsed)
    except _FileProblem as problem:
        parsed.rows.clear()
        parsed.errors.insert(0, problem.issue)
    return parsed


def _parse(content: bytes, max_rows: int, parsed: ParsedFile) -> None:
    if not content.strip():
        raise _FileProblem("EMPTY_FILE", "the file is empty")
    text = decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=False)
    roles: list[str | None] = []
    headers: list[str] = []
    row_number = 0
    try:
        for record in reader:
            row_number += 1
            cells = [c.strip() for c in record]
            if not any(cells):
                continue
            if not headers:
                headers, roles = _header(cells, row_number, parsed)
                continue
            if len(parsed.rows) >= max_rows:
                raise _FileProblem(
                    "TOO_MANY_ROWS", f"the file has more than {max_rows} rows; split it"
                )
            row = _row(cells, row_number, headers, roles, parsed)
            if row is not None:
                parsed.rows.append(row)
    except csv.Error as error:
        raise _FileProblem(
            "MALFORMED_CSV", f"row {row_number + 1}: {error}", row_number + 1
        ) from None
    if not headers:
        raise _FileProblem("EMPTY_FILE", "the file has no header row")
    if not parsed.rows and not parsed.errors:
        raise _FileProblem("NO_ROWS", "the file has a header but no data rows", 1)
    _duplicates_in_file(parsed)


def _header(cells: list[str], row: int, parsed: ParsedFile) -> tuple[list[str], list[str | None]]:
    roles: list[str | None] = []
    seen: dict[str, str] = {}
    for index, header in enumerate(cells):
        problem = _bad_bytes(header)
        if problem:
            raise _FileProblem("WRONG_ENCODING", f"header {problem}", row)
        role = _column_role(header)
        if role is None:
            if header:
                parsed.warnings.append(
                    RowIssue(row, header, "IGNORED_COLUMN", f"column {header!r} is not used")
                )
        elif role != "addon":
            if role in seen:
                raise _FileProblem(
                    "DUPLICATE_COLUMN",
                    f"columns {seen[role]!r} and {header!r} (column {index + 1}) are both {role}",
                    row,
                )
            seen[role] = header
        roles.append(role)
    missing = [r for r in (EXT_KEY, NUMBER, USER) if r not in seen]
    if missing:
        raise _FileProblem(
            "MISSING_COLUMN",
            f"the header lacks {', '.join(repr(m) for m in missing)}; expected "
            f"'{EXT_KEY}', '{NUMBER}', '{USER}', 'Addon license 1', ...",
            row,
        )
    parsed.columns.update(seen)
    return cells, roles


def _row(
    cells: list[str],
    row: int,
    headers: list[str],
    roles: list[str | None],
    parsed: ParsedFile,
) -> CsvRow | None:
    values: dict[str, str] = {}
    addons: list[tuple[str, str]] = []
    ok = True
    for index, cell in enumerate(cells):
        if index >= len(headers):
            if cell:
                parsed.warnings.append(
                    RowIssue(row, "", "IGNORED_CELLS", "cells after the last column were ignored")
                )
            break
        role, header = roles[index], headers[index]
        if role is None or not cell:
            continue
        problem = _bad_bytes(cell)
        if problem:
            parsed.errors.append(RowIssue(row, header, "WRONG_ENCODING", problem))
            ok = False
            continue
        if len(cell) > MAX_CELL:
            parsed.errors.append(
                RowIssue(row, header, "CELL_TOO_LONG", f"is longer than {MAX_CELL} characters")
            )
            ok = False
            continue
        if role == "addon":
            addons.append((header, cell))
        else:
            values[role] = cell
    column = {role: headers[i] for i, role in enumerate(roles) if role}
    for role in (EXT_KEY, USER):
        if role not in values and ok:
            parsed.errors.append(RowIssue(row, column[role], "MISSING_FIELD", f"{role} is empty"))
            ok = False
    ext_key, number = values.get(EXT_KEY, ""), values.get(NUMBER, "")
    parsed.keys.append((row, ext_key, number))
    if ext_key and (problem := ext_key_problem(ext_key)):
        parsed.errors.append(RowIssue(row, column[EXT_KEY], "MALFORMED_EXT_KEY", problem))
        ok = False
    if number and (problem := number_problem(number)):
        parsed.errors.append(RowIssue(row, column[NUMBER], "MALFORMED_NUMBER", problem))
        ok = False
    seen: dict[str, str] = {}
    for header, cell in addons:
        found = catalog.addon_by_cell(cell)
        if found is None:
            codes = ", ".join(t.code for t in catalog.of_category(catalog.BASE_ADDON))
            parsed.errors.append(
                RowIssue(
                    row,
                    header,
                    "UNKNOWN_ADDON",
                    f"{cell[:64]!r} is not an add-on license code; use one of: {codes}",
                )
            )
            ok = False
        elif found.code in seen:
            parsed.errors.append(
                RowIssue(
                    row,
                    header,
                    "DUPLICATE_ADDON",
                    f"{found.code} is already in column {seen[found.code]!r}",
                )
            )
            ok = False
        else:
            seen[found.code] = header
    if not ok:
        return None
    return CsvRow(row, ext_key, number, values[USER], tuple((h, c) for h, c in addons))


def _duplicates_in_file(parsed: ParsedFile) -> None:
    kept: list[CsvRow] = []
    ext_keys: dict[str, int] = {}
    numbers: dict[str, int] = {}
    for row_number, ext_key, number in parsed.keys:
        if ext_key:
            ext_keys.setdefault(ext_key, row_number)
        if number and number_problem(number) is None:
            numbers.setdefault(number_key(number), row_number)
    for row in parsed.rows:
        ok = True
        first = ext_keys.get(row.ext_key, row.row)
        if first != row.row:
            parsed.errors.append(
                RowIssue(
                    row.row,
                    parsed.column(EXT_KEY),
                    "DUPLICATE_EXT_KEY",
                    f"extension {row.ext_key[:64]!r} is also in row {first}",
                )
            )
            ok = False
        if row.number:
            first = numbers.get(number_key(row.number), row.row)
            if first != row.row:
                parsed.errors.append(
                    RowIssue(
                        row.row,
                        parsed.column(NUMBER),
                        "DUPLICATE_NUMBER",
                        f"number {row.number!r} is also in row {first}",
                    )
                )
                ok = False
        if ok:
            kept.append(row)
    parsed.rows[:] = kept


# --- checking against the account -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountUser:
    user_id: uuid.UUID
    display_name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class ExistingLicense:
    """A Phone System license the account already has."""

    license_id: uuid.UUID
    user_id: uuid.UUID
    ext_key: str | None
    number: str | None
    addons: frozenset[str]


@dataclass(frozen=True, slots=True)
class Account:
    """What the account already holds: the office's users and their Phone System
    licenses, and the company's extension keys and numbers (by number_key)."""

    users: Sequence[AccountUser]
    phone_systems: Mapping[uuid.UUID, ExistingLicense]  # by user
    ext_keys: Mapping[str, uuid.UUID]  # ext key -> license
    numbers: Mapping[str, uuid.UUID]  # number_key -> license


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """What applying one row does."""

    row: int
    user_id: uuid.UUID
    license_id: uuid.UUID | None  # an existing license to reconfigure; None: a new one
    ext_key: str
    number: str | None  # None: keep the license's number (none for a new license)
    new_addons: tuple[str, ...]  # add-on codes to allocate, in catalog order


def _user_index(users: Iterable[AccountUser]) -> dict[str, list[AccountUser]]:
    index: dict[str, list[AccountUser]] = {}
    for user in users:
        index.setdefault(str(user.user_id), []).append(user)
        if user.email:
            index.setdefault("@" + user.email.casefold(), []).append(user)
        index.setdefault("=" + user.display_name.strip().casefold(), []).append(user)
    return index


def _find_user(cell: str, index: Mapping[str, list[AccountUser]]) -> list[AccountUser]:
    try:
        return index.get(str(uuid.UUID(cell)), [])
    except ValueError:
        pass
    if "@" in cell and (found := index.get("@" + cell.casefold())):
        return found
    return index.get("=" + cell.casefold(), [])


def plan(parsed: ParsedFile, account: Account) -> tuple[list[PlannedRow], list[RowIssue]]:
    """Checks the rows against the account (unknown or duplicate users, extension keys
    and numbers already used by other licenses) and says what each row does."""
    index = _user_index(account.users)
    issues: list[RowIssue] = []
    users_seen: dict[uuid.UUID, int] = {}
    resolved: list[tuple[CsvRow, AccountUser]] = []
    for row in parsed.rows:
        found = _find_user(row.user, index)
        if not found:
            issues.append(
                RowIssue(
                    row.row,
                    parsed.column(USER),
                    "UNKNOWN_USER",
                    f"no user {row.user[:64]!r} in this office",
                )
            )
            continue
        if len(found) > 1:
            issues.append(
                RowIssue(
                    row.row,
                    parsed.column(USER),
                    "AMBIGUOUS_USER",
                    f"{len(found)} users are called {row.user[:64]!r}; use their e-mail or id",
                )
            )
            continue
        user = found[0]
        first = users_seen.setdefault(user.user_id, row.row)
        if first != row.row:
            issues.append(
                RowIssue(
                    row.row,
                    parsed.column(USER),
                    "DUPLICATE_USER",
                    f"user {row.user[:64]!r} is also in row {first}; one Phone System "
                    "license per user",
                )
            )
            continue
        resolved.append((row, user))
    # Licenses the file reconfigures give up their extension key (and number, when the
    # row sets one): those values may move to another row of the same file.
    reconfigured = {
        account.phone_systems[u.user_id].license_id: row
        for row, u in resolved
        if u.user_id in account.phone_systems
    }
    planned: list[PlannedRow] = []
    order = {t.code: i for i, t in enumerate(catalog.of_category(catalog.BASE_ADDON))}
    for row, user in resolved:
        existing = account.phone_systems.get(user.user_id)
        mine = existing.license_id if existing else None
        ok = True
        holder = account.ext_keys.get(row.ext_key)
        if holder is not None and holder != mine and holder not in reconfigured:
            issues.append(
                RowIssue(
                    row.row,
                    parsed.column(EXT_KEY),
                    "DUPLICATE_EXT_KEY",
                    f"extension {row.ext_key[:64]!r} already belongs to license {holder}",
                )
            )
            ok = False
        if row.number:
            holder = account.numbers.get(number_key(row.number))
            moving = holder in reconfigured and bool(reconfigured[holder].number)
            if holder is not None and holder != mine and not moving:
                issues.append(
                    RowIssue(
                        row.row,
                        parsed.column(NUMBER),
                        "DUPLICATE_NUMBER",
                        f"number {row.number!r} already belongs to license {holder}",
                    )
                )
                ok = False
        if not ok:
            continue
        codes = {catalog.addon_by_cell(cell) for _, cell in row.addons}
        wanted = sorted((t.code for t in codes if t is not None), key=order.__getitem__)
        have = existing.addons if existing else frozenset()
        planned.append(
            PlannedRow(
                row=row.row,
                user_id=user.user_id,
                license_id=mine,
                ext_key=row.ext_key,
                number=row.number or None,
                new_addons=tuple(c for c in wanted if c not in have),
            )
        )
    return planned, issues


def needs(rows: Iterable[PlannedRow]) -> dict[str, int]:
    """Units to allocate per license type: new Phone System licenses, then add-ons."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.license_id is None:
            counts[catalog.PHONE_SYSTEM] = counts.get(catalog.PHONE_SYSTEM, 0) + 1
        for code in row.new_addons:
            counts[code] = counts.get(code, 0) + 1
    return counts


def sorted_issues(issues: Iterable[RowIssue]) -> list[RowIssue]:
    return sorted(issues, key=lambda i: (i.row, i.column))


# --- the template ---------------------------------------------------------------------


def template(header_only: bool = False) -> bytes:
    """The downloadable sample: UTF-8 with a BOM (spreadsheets then read it as UTF-8)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    addon_headers = [f"Addon license {n}" for n in range(1, TEMPLATE_ADDON_COLUMNS + 1)]
    writer.writerow([EXT_KEY, NUMBER, USER, *addon_headers])
    if not header_only:
        writer.writerows(_SAMPLES)
    return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")
