"""Mass configuration on the in-memory unit of work and pool: a dry run reports and
quotes without storing anything; applying holds, commits, then writes every row at once,
or rolls the pool back and fails with the reason."""

from __future__ import annotations

import uuid

import pytest

from libs.common.errors import InvalidArgument, NotFound
from services.provisioning.domain import errors
from services.provisioning.domain.model import ImportStage, ImportState
from services.provisioning.use_cases.imports import ImportFile
from tests.unit.provisioning.world import World

FILE = (
    "Ext Key,Number,User,Addon license 1\n"
    "101,6567891230,Ann,device_ip_phone\n"
    "102,,Bob,\n"
    "103,6567891232,Cy,device_ip_phone\n"
)


async def account(world: World, spare: dict[str, int]) -> None:
    world.office("hq", {"connect": 3, **spare})
    for index, name in enumerate(("Ann", "Bob", "Cy")):
        await world.create_user(world.create_command("hq", name, f"user-{index}"))


def file(world: World, import_id: str = "imp-1", content: str = FILE) -> ImportFile:
    return ImportFile(world.company_id, world.offices["hq"], import_id, content.encode())


async def test_a_dry_run_quotes_the_units_and_stores_nothing() -> None:
    world = World()
    await account(world, {"phone_system": 2})
    job = await world.imports.dry_run(file(world))
    assert job.state is ImportState.VALIDATED
    quote = {q.license_type: (q.needed, q.own_spare, q.shortfall) for q in job.quote}
    assert quote == {"phone_system": (3, 2, 1), "device_ip_phone": (2, 0, 2)}
    # the shortfall the apply would fail with is an error of the file, of no row
    assert [(i.row, i.reason) for i in job.errors] == [
        (0, "NO_LICENSE_AVAILABLE"),
        (0, "NO_LICENSE_AVAILABLE"),
    ]
    assert job.error_count == 2
    assert job.errors[0].message.startswith("needs 1 more phone_system")
    assert job.errors[1].message.startswith("needs 2 more device_ip_phone")
    assert world.state.imports == {}
    assert world.state.licenses == {}
    assert world.pool.pending_holds() == []


async def test_a_dry_run_reports_every_row_problem() -> None:
    world = World()
    await account(world, {})
    job = await world.imports.dry_run(file(world, content=FILE + "104,,Nobody,\n"))
    assert [(i.row, i.reason) for i in job.errors] == [(5, "UNKNOWN_USER")]
    assert job.quote == ()  # no quote for a file with errors


async def test_a_dry_run_for_an_office_the_pool_does_not_know_is_not_found() -> None:
    world = World()
    await account(world, {})
    with pytest.raises(NotFound) as caught:
        await world.imports.dry_run(ImportFile(world.company_id, uuid.uuid4(), "", FILE.encode()))
    assert caught.value.reason == "OFFICE_NOT_FOUND"


async def test_applying_writes_every_row_and_assigns_every_unit() -> None:
    world = World()
    await account(world, {"phone_system": 3, "device_ip_phone": 2})
    started = await world.imports.start(file(world))
    assert started.state is ImportState.RUNNING
    job = await world.imports.wait(world.company_id, "imp-1")

    assert job.state is ImportState.SUCCEEDED
    assert job.stage is ImportStage.NONE
    assert job.progress.rows_applied == 3
    phones = {h.license.ext_key: h.license for h in world.state.licenses.values()}
    assert set(phones) == {"101", "102", "103"}
    assert len(world.state.addons) == 2
    assert world.pool.in_state("SPARE") == []  # every unit committed
    assert world.pool.pending_holds() == []


async def test_a_shortfall_rolls_the_pool_back_and_fails_the_import() -> None:
    world = World()
    await account(world, {"phone_system": 3, "device_ip_phone": 1})
    spare_before = {u.unit_id for u in world.pool.in_state("SPARE")}
    await world.imports.start(file(world))
    job = await world.imports.wait(world.company_id, "imp-1")

    assert job.state is ImportState.FAILED
    assert job.failure is not None
    assert job.failure.reason == "NO_LICENSE_AVAILABLE"
    assert job.failure.metadata["shortfall.device_ip_phone"] == "1"
    assert {u.unit_id for u in world.pool.in_state("SPARE")} == spare_before
    assert world.pool.pending_holds() == []
    assert world.state.licenses == {}


async def test_a_failed_import_is_applied_again_under_its_id_once_fixed() -> None:
    world = World()
    await account(world, {"phone_system": 3, "device_ip_phone": 1})
    await world.imports.start(file(world))
    failed = await world.imports.wait(world.company_id, "imp-1")
    assert failed.state is ImportState.FAILED

    world.office("hq", {"device_ip_phone": 1})  # the cause, fixed
    again = await world.imports.start(file(world))
    assert again.state is ImportState.RUNNING
    assert again.failure is None
    job = await world.imports.wait(world.company_id, "imp-1")
    assert job.state is ImportState.SUCCEEDED, job.failure
    assert job.progress.rows_applied == 3
    assert len(world.state.addons) == 2
    assert world.pool.in_state("SPARE") == []
    # succeeded: now it is remembered
    assert (await world.imports.start(file(world))).state is ImportState.SUCCEEDED


async def test_an_import_applied_again_while_its_failed_runner_finishes_is_driven() -> None:
    world = World()
    await account(world, {"phone_system": 3, "device_ip_phone": 1})
    service = world.imports
    update = service._update
    again: list[ImportState] = []

    async def failing_then_fixed(company_id: uuid.UUID, import_id: str, **fields: object) -> None:
        await update(company_id, import_id, **fields)
        if fields.get("state") == "FAILED" and not again:  # the runner has not ended yet
            world.office("hq", {"device_ip_phone": 1})
            again.append((await service.start(file(world))).state)

    service._update = failing_then_fixed  # type: ignore[method-assign]
    await service.start(file(world))
    job = await service.wait(world.company_id, "imp-1")  # the same runner, both attempts
    assert again == [ImportState.RUNNING]
    assert job.state is ImportState.SUCCEEDED, job.failure
    assert len(world.state.addons) == 2


async def test_the_same_import_id_with_another_file_is_refused() -> None:
    world = World()
    await account(world, {"phone_system": 3, "device_ip_phone": 2})
    await world.imports.start(file(world))
    await world.imports.wait(world.company_id, "imp-1")
    again = await world.imports.start(file(world))  # same file: the same import
    assert again.state is ImportState.SUCCEEDED
    with pytest.raises(InvalidArgument) as caught:
        await world.imports.start(file(world, content=FILE.replace("103", "105")))
    assert caught.value.reason == "IMPORT_ID_REUSED"


async def test_a_file_with_errors_is_rejected_and_nothing_is_stored() -> None:
    world = World()
    await account(world, {})
    with pytest.raises(errors.ImportRejected) as caught:
        await world.imports.start(file(world, content=FILE + "104,,Nobody,\n"))
    assert [i.reason for i in caught.value.issues] == ["UNKNOWN_USER"]
    assert world.state.imports == {}
