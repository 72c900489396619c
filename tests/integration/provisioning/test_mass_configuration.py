"""CSV mass configuration: dry run, apply, re-apply, odd files, against PostgreSQL."""

from __future__ import annotations

import codecs
import os
import time
import uuid

import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pool_pb
from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import details_of, reason_of
from tests.support.provisioning import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEADER = "Ext Key,Number,User,Addon license 1,Addon license 2\r\n"


async def setup(tenant: Tenant, names: list[str], phones: int, addons: dict[str, int]) -> None:
    await tenant.company.office("hq", "USD")
    await tenant.company.add("hq", "connect", len(names))
    if phones:
        await tenant.company.add("hq", "phone_system", phones)
    for code, count in addons.items():
        await tenant.company.add("hq", code, count)
    for name in names:
        await tenant.user("hq", name)


async def assigned(tenant: Tenant, code: str) -> int:
    units = await tenant.company.units(license_type=code, state=pool_pb.UNIT_STATE_ASSIGNED)
    return len(units)


async def test_template_is_utf8_csv_with_samples(tenant: Tenant) -> None:
    template = await tenant.stub.GetMassConfigurationTemplate(
        pb.GetMassConfigurationTemplateRequest()
    )
    assert template.content.startswith(codecs.BOM_UTF8)
    text = template.content.decode("utf-8-sig")
    assert text.splitlines()[0] == "Ext Key,Number,User,Addon license 1,Addon license 2," + (
        "Addon license 3,Addon license 4"
    )
    assert "101,6567891230,John,device_ip_phone" in text
    assert "license_number" in [t.code for t in template.addon_types]


async def test_dry_run_apply_and_reapply_same_import_id(tenant: Tenant) -> None:
    await setup(tenant, ["John", "Alice"], 2, {"device_ip_phone": 2, "call_recording": 1})
    content = (
        HEADER + "101,6567891230,John,device_ip_phone,call_recording\r\n"
        "102,6567891231,alice,IP Phone,\r\n"
    ).encode()
    dry = await tenant.configure("hq", content, validate_only=True)
    assert dry.state == pb.IMPORT_STATE_VALIDATED
    assert dry.error_count == 0
    quote = {q.license_type: (q.needed, q.own_spare, q.shortfall) for q in dry.quote}
    assert quote == {
        "phone_system": (2, 2, 0),
        "device_ip_phone": (2, 2, 0),
        "call_recording": (1, 1, 0),
    }
    assert await tenant.licenses() == []  # nothing changed

    started = await tenant.configure("hq", content, import_id="csv-1")
    assert started.state in (pb.IMPORT_STATE_RUNNING, pb.IMPORT_STATE_SUCCEEDED)
    done = await tenant.finished("csv-1")
    assert done.state == pb.IMPORT_STATE_SUCCEEDED, done.failure
    assert done.progress.rows_applied == 2
    assert done.progress.units_committed == 5
    licenses = {h.ext_key: h for h in await tenant.licenses()}
    assert set(licenses) == {"101", "102"}
    assert sorted(a.license_type for a in licenses["101"].addons) == [
        "call_recording",
        "device_ip_phone",
    ]
    assert licenses["102"].number == "6567891231"

    again = await tenant.configure("hq", content, import_id="csv-1")
    assert again.state == pb.IMPORT_STATE_SUCCEEDED
    # another import of the same file reconfigures the same licenses: nothing new
    other = await tenant.finished(
        (await tenant.configure("hq", content, import_id="csv-2")).import_id
    )
    assert other.state == pb.IMPORT_STATE_SUCCEEDED
    assert other.rows_reconfiguring == 2
    assert len(await tenant.licenses()) == 2
    assert await assigned(tenant, "phone_system") == 2
    assert await assigned(tenant, "device_ip_phone") == 2

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.configure("hq", content + b"\r\n109,,John\r\n", import_id="csv-1")
    assert reason_of(caught.value) == "IMPORT_ID_REUSED"


async def test_shortfall_fails_whole_import_and_takes_nothing(tenant: Tenant) -> None:
    await setup(tenant, ["A", "B"], 2, {"team_chat": 1})
    content = (HEADER + "201,,A,team_chat\r\n202,,B,team_chat\r\n").encode()
    dry = await tenant.configure("hq", content, validate_only=True)
    assert {q.license_type: q.shortfall for q in dry.quote}["team_chat"] == 1
    await tenant.configure("hq", content, import_id="short")
    done = await tenant.finished("short")
    assert done.state == pb.IMPORT_STATE_FAILED
    assert done.failure.reason == "NO_LICENSE_AVAILABLE"
    assert done.failure.metadata["shortfall.team_chat"] == "1"
    assert await tenant.licenses() == []
    spare = await tenant.company.units(state=pool_pb.UNIT_STATE_SPARE)
    assert sorted(u.license_type for u in spare) == ["phone_system", "phone_system", "team_chat"]


async def test_a_dry_run_reports_the_shortfall_and_a_failed_import_id_is_applied_again(
    tenant: Tenant,
) -> None:
    await setup(tenant, ["A", "B"], 2, {})
    content = (HEADER + "301,,A,call_recording\r\n302,,B,call_recording\r\n").encode()
    dry = await tenant.configure("hq", content, validate_only=True)
    assert dry.error_count == 1
    assert [(i.row, i.reason) for i in dry.errors] == [(0, "NO_LICENSE_AVAILABLE")]
    assert dry.errors[0].message.startswith("needs 2 more call_recording")

    await tenant.configure("hq", content, import_id="retry-me")
    failed = await tenant.finished("retry-me")
    assert failed.state == pb.IMPORT_STATE_FAILED
    assert failed.failure.reason == "NO_LICENSE_AVAILABLE"

    await tenant.company.add("hq", "call_recording", 2)  # the cause, fixed
    assert (await tenant.configure("hq", content, validate_only=True)).error_count == 0
    again = await tenant.configure("hq", content, import_id="retry-me")
    assert again.state in (pb.IMPORT_STATE_RUNNING, pb.IMPORT_STATE_SUCCEEDED)
    assert not again.HasField("failure")
    done = await tenant.finished("retry-me")
    assert done.state == pb.IMPORT_STATE_SUCCEEDED, done.failure
    assert done.progress.rows_applied == 2
    assert await assigned(tenant, "call_recording") == 2
    assert await assigned(tenant, "phone_system") == 2
    # succeeded, so remembered: the same id replays it, another file is refused
    assert (await tenant.configure("hq", content, import_id="retry-me")).state == (
        pb.IMPORT_STATE_SUCCEEDED
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.configure("hq", content + b"303,,A,\r\n", import_id="retry-me")
    assert reason_of(caught.value) == "IMPORT_ID_REUSED"


async def test_row_errors_are_reported_with_row_numbers(tenant: Tenant) -> None:
    await setup(tenant, ["John", "Alice"], 0, {})
    content = (
        b"Ext Key,Number,User,Addon license 1,Notes\r\n"
        b"101,6567891230,John,device_ip_phone,hello\r\n"
        b"101,6567891231,Alice,,\r\n"
        b"103,6.56789E+09,Nobody,fax_machine,\r\n"
        b",6567891230,John,,\r\n"
    )
    dry = await tenant.configure("hq", content, validate_only=True)
    found = {(i.row, i.reason) for i in dry.errors}
    assert found == {
        (3, "DUPLICATE_EXT_KEY"),
        (4, "MALFORMED_NUMBER"),
        (4, "UNKNOWN_ADDON"),
        (5, "MISSING_FIELD"),
    }
    assert [(w.row, w.reason, w.column) for w in dry.warnings] == [(1, "IGNORED_COLUMN", "Notes")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.configure("hq", content, import_id="bad")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "IMPORT_HAS_ERRORS"
    from google.rpc import error_details_pb2

    (bad,) = details_of(caught.value, error_details_pb2.BadRequest)
    assert len(bad.field_violations) == 4
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenant.stub.GetImport(
            pb.GetImportRequest(company_id=tenant.company_id, import_id="bad")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_formula_cells_odd_encoding_and_semicolons(tenant: Tenant) -> None:
    await setup(tenant, ["Zoë", "Ann"], 2, {})
    formula = '=HYPERLINK("http://evil.example","x")'
    quoted = '"' + formula.replace('"', '""') + '"'
    text = f"EXT KEY;number; user ;Addon License 1\r\n{quoted};+6567891299;zoë;\r\n"
    content = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    await tenant.configure("hq", content, import_id="odd")
    done = await tenant.finished("odd")
    assert done.state == pb.IMPORT_STATE_SUCCEEDED, (done.failure, done.errors)
    (held,) = await tenant.licenses()
    assert held.ext_key == formula
    assert held.number == "+6567891299"

    latin1 = "Ext Key,Number,User\r\n105,,Zoë\r\n".encode("latin-1")
    dry = await tenant.configure("hq", latin1, validate_only=True)
    assert [(i.row, i.reason) for i in dry.errors] == [(2, "WRONG_ENCODING")]

    dup_account = b"Ext Key,Number,User\r\n106,6567891299,Ann\r\n"
    dry = await tenant.configure("hq", dup_account, validate_only=True)
    assert [(i.row, i.reason) for i in dry.errors] == [(2, "DUPLICATE_NUMBER")]


@pytest.mark.slow
async def test_ten_thousand_rows_apply_in_seconds(tenant: Tenant, db: object) -> None:
    import uuid

    await tenant.company.office("hq", "USD")
    rows = int(os.environ.get("IMPORT_ROWS", "10000"))
    await tenant.company.add("hq", "phone_system", rows)
    await tenant.company.add("hq", "device_ip_phone", rows)
    await tenant.company.add("hq", "call_recording", rows)
    # users straight into the table: creating 10,000 users is not what is measured
    pool_db = db
    office = tenant.company.offices["hq"]
    names = [f"user{n}" for n in range(rows)]
    ids = [uuid.uuid4() for _ in names]
    await pool_db.execute(  # type: ignore[attr-defined]
        """
        INSERT INTO provisioning.users (user_id, company_id, office_id, display_name,
            license_type, license_unit_id, created_at, updated_at)
        SELECT u, $1, $2, n, 'connect', gen_random_uuid(), now(), now()
        FROM unnest($3::uuid[], $4::text[]) AS x(u, n)
        """,
        uuid.UUID(tenant.company_id),
        uuid.UUID(office),
        ids,
        names,
    )
    lines = [HEADER.strip()]
    lines += [
        f"{1000 + n},{6500000000 + n},{names[n]},device_ip_phone,call_recording"
        for n in range(rows)
    ]
    content = ("\r\n".join(lines) + "\r\n").encode()
    began = time.monotonic()
    dry = await tenant.configure("hq", content, validate_only=True)
    assert dry.error_count == 0
    assert dry.row_count == rows
    dry_took = time.monotonic() - began
    await tenant.configure("hq", content, import_id="big")
    done = await tenant.finished("big")
    assert dry_took < 30, dry_took
    took = time.monotonic() - began
    assert done.state == pb.IMPORT_STATE_SUCCEEDED, done.failure
    assert done.progress.units_committed == 3 * rows
    again = await tenant.configure("hq", content, import_id="big")
    assert again.state == pb.IMPORT_STATE_SUCCEEDED
    assert await assigned(tenant, "phone_system") == rows
    assert await assigned(tenant, "call_recording") == rows
    assert took < 60, took


async def test_watching_an_unknown_import_is_not_found(tenant: Tenant) -> None:
    # Streaming calls get the same error mapping as unary ones.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in tenant.stub.WatchImport(
            pb.WatchImportRequest(company_id=tenant.company_id, import_id=str(uuid.uuid4()))
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(caught.value).endswith("NOT_FOUND")
