"""What the command line says about an import's progress, a dry run and a deleted user's
units, from the messages alone."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from licensing.provisioning.v1 import provisioning_pb2 as pb
from licensing_cli.commands.imports import progress_rows, verdict
from licensing_cli.commands.users import where_it_went


def test_the_progress_bar_counts_rows_not_steps() -> None:
    job = pb.Import(state=pb.IMPORT_STATE_RUNNING, row_count=10)
    job.progress.units_total = 20  # 10 phones and 10 add-ons
    assert progress_rows(job) == (0, 10)
    job.progress.units_reserved = 20  # every unit held: half the way
    assert progress_rows(job) == (5, 10)
    job.progress.units_committed = 20  # every unit assigned, rows not written yet
    assert progress_rows(job) == (9, 10)
    job.state, job.progress.rows_applied = pb.IMPORT_STATE_SUCCEEDED, 10
    assert progress_rows(job) == (10, 10)


def test_the_dry_run_says_plainly_whether_the_file_can_be_applied() -> None:
    clean = pb.Import(state=pb.IMPORT_STATE_VALIDATED, row_count=3)
    assert "This file can be applied" in verdict(clean)
    short = pb.Import(
        state=pb.IMPORT_STATE_VALIDATED,
        row_count=3,
        error_count=2,
        errors=[
            pb.RowIssue(row=0, reason="NO_LICENSE_AVAILABLE", message="needs 2 more x"),
            pb.RowIssue(row=3, column="User", reason="UNKNOWN_USER", message="no such user"),
        ],
    )
    said = verdict(short)
    assert "cannot be applied" in said
    assert "1 error(s) in its rows" in said
    assert "purchase or free the licenses it lacks" in said


def test_a_returned_unit_says_where_it_went() -> None:
    at = Timestamp()
    at.FromDatetime(datetime(2026, 1, 5, 12, 30, tzinfo=UTC))
    pooled = pb.ReturnedUnit(
        unit_id="u1", license_type="connect", state="POOLED", currency="USD", claimable_time=at
    )
    same_day = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert where_it_went(pooled, same_day) == (
        "connect u1 returned to the USD pool; other offices can claim it from 12:30:00 UTC"
    )
    assert "2026-01-05 12:30:00 UTC" in where_it_went(pooled, datetime(2026, 1, 4, tzinfo=UTC))
    spare = pb.ReturnedUnit(unit_id="u2", license_type="fax", state="SPARE", currency="USD")
    assert where_it_went(spare) == "fax u2 kept as a spare license of the office"
