"""The CSV rules of mass configuration: every problem reported with its row number."""

from __future__ import annotations

import codecs
import uuid

from services.provisioning.domain import csv_import
from services.provisioning.domain.csv_import import Account, AccountUser, ExistingLicense

JOHN, ALICE, BOB = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
ACCOUNT = Account(
    users=[
        AccountUser(JOHN, "John", "john@example.com"),
        AccountUser(ALICE, "Alice", None),
        AccountUser(BOB, "Bob", None),
    ],
    phone_systems={},
    ext_keys={},
    numbers={},
)


def check(text: str | bytes, account: Account = ACCOUNT) -> tuple[list, set]:  # type: ignore[type-arg]
    content = text.encode() if isinstance(text, str) else text
    parsed = csv_import.parse(content)
    planned, issues = csv_import.plan(parsed, account)
    return planned, {(i.row, i.reason) for i in [*parsed.errors, *issues]}


def test_sample_template_parses() -> None:
    parsed = csv_import.parse(csv_import.template())
    assert [r.user for r in parsed.rows] == ["John", "Alice", "Lucie", "Hallie"]
    assert parsed.errors == []
    assert csv_import.parse(csv_import.template(header_only=True)).errors[0].reason == "NO_ROWS"


def test_every_row_error_has_its_row_number() -> None:
    planned, issues = check(
        "Ext Key,Number,User,Addon license 1,Addon license 2\n"
        "101,6567891230,John,device_ip_phone,device_ip_phone\n"  # 2: duplicate add-on
        "102,6567891231,Nobody,,\n"  # 3: unknown user
        "101,6567891232,Alice,,\n"  # 4: duplicate ext key in the file
        "104,6567891230,Bob,,\n"  # 5: duplicate number in the file
        "105,12-34,Bob,,\n"  # 6: malformed number
        "106,,,,\n"  # 7: missing user
        ",6567891239,Bob,,\n"  # 8: missing ext key
        "107,,Bob,fax_machine,\n"  # 9: unknown add-on
        "108,,Bob,,\n"  # 10: fine
    )
    assert issues == {
        (2, "DUPLICATE_ADDON"),
        (3, "UNKNOWN_USER"),
        (4, "DUPLICATE_EXT_KEY"),
        (5, "DUPLICATE_NUMBER"),
        (6, "MALFORMED_NUMBER"),
        (7, "MISSING_FIELD"),
        (8, "MISSING_FIELD"),
        (9, "UNKNOWN_ADDON"),
    }
    assert [p.row for p in planned] == [10]


def test_duplicates_against_the_account_and_user_twice() -> None:
    taken = uuid.uuid4()
    account = Account(ACCOUNT.users, {}, {"101": taken}, {"6567891230": taken})
    _, issues = check("Ext Key,Number,User\n101,,John\n102,+6567891230,Alice\n103,,John\n", account)
    assert issues == {(2, "DUPLICATE_EXT_KEY"), (3, "DUPLICATE_NUMBER"), (4, "DUPLICATE_USER")}


def test_existing_license_is_reconfigured_and_keeps_its_addons() -> None:
    mine = uuid.uuid4()
    existing = ExistingLicense(mine, JOHN, "101", "6567891230", frozenset({"call_recording"}))
    account = Account(ACCOUNT.users, {JOHN: existing}, {"101": mine}, {"6567891230": mine})
    planned, issues = check(
        "Ext Key,Number,User,Addon license 1,Addon license 2\n"
        "101,6567891230,john@EXAMPLE.com,call_recording,IP Phone\n",
        account,
    )
    assert issues == set()
    (row,) = planned
    assert row.license_id == mine
    assert row.new_addons == ("device_ip_phone",)
    assert csv_import.needs(planned) == {"device_ip_phone": 1}


def test_ext_keys_may_swap_between_licenses_of_the_file() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    account = Account(
        ACCOUNT.users,
        {
            JOHN: ExistingLicense(a, JOHN, "101", None, frozenset()),
            ALICE: ExistingLicense(b, ALICE, "102", None, frozenset()),
        },
        {"101": a, "102": b},
        {},
    )
    _, issues = check("Ext Key,Number,User\n102,,John\n101,,Alice\n", account)
    assert issues == set()


def test_header_is_tolerant_and_extra_columns_are_warnings() -> None:
    parsed = csv_import.parse(
        b" ext key ;NUMBER;User;Notes;ADD-ON LICENSE 7\n101;;John;hi;team_chat;extra\n"
    )
    assert parsed.errors == []
    assert [(w.row, w.reason) for w in parsed.warnings] == [
        (1, "IGNORED_COLUMN"),
        (2, "IGNORED_CELLS"),
    ]
    assert parsed.rows[0].addons == (("ADD-ON LICENSE 7", "team_chat"),)


def test_missing_and_duplicate_columns_are_file_errors() -> None:
    assert [(i.row, i.reason) for i in csv_import.parse(b"Ext Key,User\n1,John\n").errors] == [
        (1, "MISSING_COLUMN")
    ]
    parsed = csv_import.parse(b"Ext Key,Number,User,user\n1,,John,John\n")
    assert [(i.row, i.reason) for i in parsed.errors] == [(1, "DUPLICATE_COLUMN")]
    assert csv_import.parse(b"").errors[0].reason == "EMPTY_FILE"
    assert csv_import.parse(b"PK\x03\x04rest").errors[0].reason == "NOT_CSV"


def test_encodings() -> None:
    text = "Ext Key,Number,User\n101,,Zoë\n"
    for content in (
        text.encode(),
        codecs.BOM_UTF8 + text.encode(),
        codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        text.encode("utf-16-le"),  # no BOM: recognized by its zero bytes
    ):
        parsed = csv_import.parse(content)
        assert parsed.errors == [], content[:8]
        assert parsed.rows[0].user == "Zoë", content[:8]
    parsed = csv_import.parse(text.encode("cp1252"))
    assert [(i.row, i.column, i.reason) for i in parsed.errors] == [(2, "User", "WRONG_ENCODING")]
    assert "0xEB" in parsed.errors[0].message


def test_formula_cells_are_kept_verbatim() -> None:
    formula = '=HYPERLINK("http://x","101")'
    cell = '"' + formula.replace('"', '""') + '"'
    planned, issues = check(f"Ext Key,Number,User\n{cell},,Bob\n+1,,Alice\n@SUM(A1),,John\n")
    assert issues == set()
    assert [p.ext_key for p in planned] == [formula, "+1", "@SUM(A1)"]


def test_numbers() -> None:
    _, issues = check(
        "Ext Key,Number,User\n1,6.56789E+09,John\n2,+65 6789,Alice\n3,+6567891230,Bob\n"
    )
    assert issues == {(2, "MALFORMED_NUMBER"), (3, "MALFORMED_NUMBER")}


def test_blank_rows_are_skipped_but_counted_in_row_numbers() -> None:
    _, issues = check("Ext Key,Number,User\n,,\n\n101,,Nobody\n")
    assert issues == {(4, "UNKNOWN_USER")}


def test_ambiguous_names_need_an_email_or_id() -> None:
    twin = uuid.uuid4()
    account = Account([*ACCOUNT.users, AccountUser(twin, "john", None)], {}, {}, {})
    planned, issues = check(f"Ext Key,Number,User\n1,,John\n2,,{twin}\n", account)
    assert issues == {(2, "AMBIGUOUS_USER")}
    assert [p.user_id for p in planned] == [twin]
