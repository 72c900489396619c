"""Provisioning's wire <-> domain: requests checked and turned into commands, domain
results turned into messages, and the responses a mutating call stores (`ENCODERS`, for
the pool operations; the others are encoded by `handlers.once`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from libs.common import paging
from libs.common.errors import invalid
from libs.common.handlers import method_name
from libs.common.idempotency import IdempotencyKey, key_for
from libs.common.license_catalog import catalog as license_catalog
from libs.common.validation import optional_uuid_field, text_field, uuid_field
from licensing.provisioning.v1 import provisioning_pb2 as pb
from services.provisioning.domain import catalog, errors
from services.provisioning.domain.extensions import ext_key_problem, number_problem
from services.provisioning.domain.model import (
    ImportJob,
    ImportStage,
    ImportState,
    License,
    RowIssue,
    Subscription,
    User,
)
from services.provisioning.domain.peers import PoolUnit
from services.provisioning.domain.pool_operation import OperationKind
from services.provisioning.use_cases.imports import ImportFile
from services.provisioning.use_cases.licenses import (
    AddonsRemoved,
    AssignLicense,
    ChangeAddons,
    LicenseCommand,
    ReassignLicense,
    SearchLicenses,
    SetExtension,
)
from services.provisioning.use_cases.users import (
    ChangeUserLicense,
    CreateUser,
    DeleteUser,
    LicenseChanged,
    ListUsers,
    UserCreated,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProvisioningService"].full_name
ERROR_DOMAIN = "provisioning.licensing"
MAX_CONTENT = 8 * 1024 * 1024
_IMPORT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_STATES = {
    ImportState.VALIDATED: pb.IMPORT_STATE_VALIDATED,
    ImportState.RUNNING: pb.IMPORT_STATE_RUNNING,
    ImportState.SUCCEEDED: pb.IMPORT_STATE_SUCCEEDED,
    ImportState.FAILED: pb.IMPORT_STATE_FAILED,
}
_STAGES = {
    ImportStage.NONE: pb.IMPORT_STAGE_UNSPECIFIED,
    ImportStage.RESERVING: pb.IMPORT_STAGE_RESERVING,
    ImportStage.COMMITTING: pb.IMPORT_STAGE_COMMITTING,
    ImportStage.FINALIZING: pb.IMPORT_STAGE_FINALIZING,
    ImportStage.ROLLING_BACK: pb.IMPORT_STAGE_ROLLING_BACK,
}


# --- domain -> proto ----------------------------------------------------------------------


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def user_pb(user: User) -> pb.User:
    return pb.User(
        user_id=str(user.user_id),
        company_id=str(user.company_id),
        office_id=str(user.office_id),
        display_name=user.display_name,
        email=user.email or "",
        license_type=user.license_type,
        license_unit_id=str(user.license_unit_id),
        create_time=_ts(user.created_at),
        update_time=_ts(user.updated_at),
    )


def license_pb(held: License) -> pb.License:
    return pb.License(
        license_id=str(held.license_id),
        company_id=str(held.company_id),
        office_id=str(held.office_id),
        license_type=held.license_type,
        user_id=str(held.user_id),
        ext_key=held.ext_key or "",
        number=held.number or "",
        addons=[
            pb.Addon(
                addon_id=str(a.addon_id), license_type=a.license_type, create_time=_ts(a.created_at)
            )
            for a in held.addons
        ],
        create_time=_ts(held.created_at),
        update_time=_ts(held.updated_at),
    )


def _issue_pb(issue: RowIssue) -> pb.RowIssue:
    return pb.RowIssue(
        row=issue.row, column=issue.column, reason=issue.reason, message=issue.message
    )


def import_pb(job: ImportJob) -> pb.Import:
    return pb.Import(
        import_id=job.import_id,
        company_id=str(job.company_id),
        office_id=str(job.office_id),
        state=_STATES[job.state],
        stage=_STAGES[job.stage],
        row_count=job.row_count,
        errors=[_issue_pb(i) for i in job.errors],
        error_count=job.error_count,
        warnings=[_issue_pb(i) for i in job.warnings],
        quote=[
            pb.QuoteLine(
                license_type=q.license_type,
                needed=q.needed,
                own_spare=q.own_spare,
                own_returns_in_grace=q.own_returns_in_grace,
                pool_claimable=q.pool_claimable,
                shortfall=q.shortfall,
            )
            for q in job.quote
        ],
        progress=pb.ImportProgress(
            units_total=job.progress.units_total,
            units_reserved=job.progress.units_reserved,
            units_committed=job.progress.units_committed,
            rows_applied=job.progress.rows_applied,
        ),
        failure=pb.ImportFailure(
            reason=job.failure.reason, message=job.failure.message, metadata=job.failure.metadata
        )
        if job.failure
        else None,
        rows_reconfiguring=job.rows_reconfiguring,
        create_time=_ts(job.created_at),
        update_time=_ts(job.updated_at),
    )


def license_type_pb(code: str) -> pb.LicenseType:
    t = license_catalog()[code]
    return pb.LicenseType(
        code=t.code, display_name=t.name, category=t.category, poolable=t.poolable
    )


# --- proto -> domain ----------------------------------------------------------------------


def _key(company_id: uuid.UUID, request: Message) -> IdempotencyKey:
    """The request's idempotency key (its request_id checked), for the method served."""
    return key_for(method_name(), company_id, request)


def next_token(items: Sequence[User] | Sequence[License], size: int) -> str:
    if len(items) <= size:
        return ""
    last = items[size - 1]
    ident = last.user_id if isinstance(last, User) else last.license_id
    return paging.time_key_token(last.created_at, ident)


def _addon_codes(field: str, values: Sequence[str]) -> tuple[str, ...]:
    if not values:
        raise invalid(field, "is required", "MISSING_FIELD")
    codes: list[str] = []
    for index, value in enumerate(values):
        code = catalog.addon_type(f"{field}[{index}]", value).code
        if code in codes:
            raise errors.duplicate_in_request(field, code)
        codes.append(code)
    return tuple(codes)


def _ext_key(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    problem = ext_key_problem(value)
    if problem:
        raise invalid("ext_key", problem, "MALFORMED_EXT_KEY")
    return value


def _number(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    problem = number_problem(value)
    if problem:
        raise invalid("number", problem, "MALFORMED_NUMBER")
    return value


def import_id(value: str, required: bool) -> str:
    if not value and not required:
        return ""
    if not value:
        raise invalid("import_id", "is required to apply a file", "MISSING_FIELD")
    if not _IMPORT_ID.fullmatch(value):
        raise invalid("import_id", "must be 1 to 64 letters, digits, '-', '_' or '.'")
    return value


def company(request: Any) -> uuid.UUID:
    return uuid_field("company_id", request.company_id)


# --- users ----------------------------------------------------------------------------


def create_user(request: pb.CreateUserRequest) -> CreateUser:
    company_id = company(request)
    office_id = uuid_field("office_id", request.office_id)
    name = text_field("display_name", request.display_name.strip(), 200)
    email = text_field("email", request.email.strip(), 254, required=False) or None
    if email and not _EMAIL.fullmatch(email):
        raise invalid("email", f"{email[:64]!r} is not an e-mail address")
    code = catalog.user_license_type("license_type", request.license_type).code
    key = _key(company_id, request)
    return CreateUser(key, company_id, office_id, name, email, code, request.purchase_if_needed)


def list_users(request: pb.ListUsersRequest) -> ListUsers:
    company_id = company(request)
    size = paging.page_size(request.page_size)
    return ListUsers(
        company_id,
        optional_uuid_field("office_id", request.office_id),
        text_field("query", request.query.strip(), 200, required=False) or None,
        paging.time_key(request.page_token),
        size + 1,
    )


def delete_user(request: pb.DeleteUserRequest) -> DeleteUser:
    company_id = company(request)
    user_id = uuid_field("user_id", request.user_id)
    return DeleteUser(_key(company_id, request), company_id, user_id)


def change_user_license(request: pb.ChangeUserLicenseRequest) -> ChangeUserLicense:
    company_id = company(request)
    user_id = uuid_field("user_id", request.user_id)
    code = catalog.user_license_type("license_type", request.license_type).code
    return ChangeUserLicense(_key(company_id, request), company_id, user_id, code)


def created_user(created: UserCreated) -> pb.CreateUserResponse:
    source = f"LICENSE_SOURCE_{created.source}" if created.source else "LICENSE_SOURCE_UNSPECIFIED"
    return pb.CreateUserResponse(
        user=user_pb(created.user), license_source=pb.LicenseSource.Value(source)
    )


def changed_user_license(changed: LicenseChanged) -> pb.ChangeUserLicenseResponse:
    returned = changed.returned_unit_id
    return pb.ChangeUserLicenseResponse(
        user=user_pb(changed.user), returned_unit_id=str(returned) if returned else ""
    )


def deleted_user(units: list[PoolUnit]) -> pb.DeleteUserResponse:
    return pb.DeleteUserResponse(
        returned_unit_ids=[str(u.unit_id) for u in units],
        returned_units=[returned_unit_pb(u) for u in units],
    )


def returned_unit_pb(unit: PoolUnit) -> pb.ReturnedUnit:
    returned = pb.ReturnedUnit(
        unit_id=str(unit.unit_id),
        license_type=unit.license_type,
        state=unit.state,
        currency=unit.currency,
    )
    if unit.claimable_at is not None:
        returned.claimable_time.FromDatetime(unit.claimable_at)
    return returned


def users_page(users: Sequence[User], size: int) -> pb.ListUsersResponse:
    return pb.ListUsersResponse(
        users=[user_pb(u) for u in users[:size]], next_page_token=next_token(users, size)
    )


# --- licenses -------------------------------------------------------------------------


def assign_license(request: pb.AssignLicenseRequest) -> AssignLicense:
    company_id = company(request)
    user_id = uuid_field("user_id", request.user_id)
    code = catalog.base_license_type("license_type", request.license_type).code
    return AssignLicense(_key(company_id, request), company_id, user_id, code)


def license_command(request: pb.UnassignLicenseRequest) -> LicenseCommand:
    company_id = company(request)
    license_id = uuid_field("license_id", request.license_id)
    return LicenseCommand(_key(company_id, request), company_id, license_id)


def terminate_license(request: pb.TerminateLicenseRequest) -> LicenseCommand:
    company_id = company(request)
    subscription_id = uuid_field("subscription_id", request.subscription_id)
    return LicenseCommand(_key(company_id, request), company_id, subscription_id)


def reassign_license(request: pb.ReassignLicenseRequest) -> ReassignLicense:
    company_id = company(request)
    license_id = uuid_field("license_id", request.license_id)
    user_id = uuid_field("user_id", request.user_id)
    return ReassignLicense(_key(company_id, request), company_id, license_id, user_id)


def change_addons(request: pb.AddAddonsRequest | pb.RemoveAddonsRequest) -> ChangeAddons:
    company_id = company(request)
    license_id = uuid_field("license_id", request.license_id)
    codes = _addon_codes("addon_types", request.addon_types)
    return ChangeAddons(_key(company_id, request), company_id, license_id, codes)


def set_extension(request: pb.SetExtensionRequest) -> SetExtension:
    company_id = company(request)
    license_id = uuid_field("license_id", request.license_id)
    ext_key, number = _ext_key(request.ext_key), _number(request.number)
    return SetExtension(_key(company_id, request), company_id, license_id, ext_key, number)


def search_licenses(request: pb.SearchLicensesRequest) -> SearchLicenses:
    company_id = company(request)
    size = paging.page_size(request.page_size)
    code = (
        catalog.base_license_type("license_type", request.license_type).code
        if request.license_type
        else None
    )
    ext_key = request.ext_key.strip() or None
    number = request.number.strip() or None
    if (ext_key or number) and code not in (None, catalog.PHONE_SYSTEM):
        raise invalid(
            "ext_key" if ext_key else "number",
            "extensions and numbers exist on phone_system licenses only",
            "NOT_PHONE_SYSTEM",
        )
    return SearchLicenses(
        company_id,
        optional_uuid_field("office_id", request.office_id),
        code,
        optional_uuid_field("user_id", request.user_id),
        ext_key,
        number,
        paging.time_key(request.page_token),
        size + 1,
    )


def licenses_page(licenses: Sequence[License], size: int) -> pb.SearchLicensesResponse:
    return pb.SearchLicensesResponse(
        licenses=[license_pb(h) for h in licenses[:size]],
        next_page_token=next_token(licenses, size),
    )


def assigned(held: License) -> pb.AssignLicenseResponse:
    return pb.AssignLicenseResponse(license=license_pb(held))


def unassigned(units: list[uuid.UUID]) -> pb.UnassignLicenseResponse:
    return pb.UnassignLicenseResponse(returned_unit_ids=[str(u) for u in units])


def reassigned(held: License) -> pb.ReassignLicenseResponse:
    return pb.ReassignLicenseResponse(license=license_pb(held))


def added_addons(held: License) -> pb.AddAddonsResponse:
    return pb.AddAddonsResponse(license=license_pb(held))


def removed_addons(removed: AddonsRemoved) -> pb.RemoveAddonsResponse:
    return pb.RemoveAddonsResponse(
        license=license_pb(removed.license),
        returned_unit_ids=[str(u) for u in removed.returned_unit_ids],
    )


def extension_set(held: License) -> pb.SetExtensionResponse:
    return pb.SetExtensionResponse(license=license_pb(held))


def terminated(s: Subscription) -> pb.TerminateLicenseResponse:
    return pb.TerminateLicenseResponse(
        subscription=pb.Subscription(
            subscription_id=str(s.subscription_id),
            license_type=s.license_type,
            office_id=str(s.office_id),
            state=s.state,
        )
    )


def _bytes(encode: Callable[[Any], Message]) -> Callable[[Any], bytes]:
    return lambda result: encode(result).SerializeToString()


# The stored response of each kind of pool operation (wired into the driver in app.py).
ENCODERS: Mapping[str, Callable[[Any], bytes]] = {
    OperationKind.CREATE_USER: _bytes(created_user),
    OperationKind.CHANGE_USER_LICENSE: _bytes(changed_user_license),
    OperationKind.ASSIGN_LICENSE: _bytes(assigned),
    OperationKind.ADD_ADDONS: _bytes(added_addons),
}


# --- catalog and mass configuration ---------------------------------------------------


def license_types_page(request: pb.ListLicenseTypesRequest) -> pb.ListLicenseTypesResponse:
    size = paging.page_size(request.page_size)
    codes = [
        t.code
        for t in license_catalog().values()
        if not request.category or t.category == request.category
    ]
    last = paging.single_key(request.page_token, codes.index)
    start = 0 if last is None else last + 1
    page = codes[start : start + size]
    more = start + size < len(codes)
    return pb.ListLicenseTypesResponse(
        license_types=[license_type_pb(c) for c in page],
        next_page_token=paging.encode_token([page[-1]]) if more and page else "",
    )


def import_file(request: pb.MassConfigureRequest) -> ImportFile:
    company_id = company(request)
    office_id = uuid_field("office_id", request.office_id)
    ident = import_id(request.import_id, required=not request.validate_only)
    if len(request.content) > MAX_CONTENT:
        raise invalid("content", f"is larger than {MAX_CONTENT // (1024 * 1024)} MiB")
    return ImportFile(company_id, office_id, ident, request.content)


def rejected_rows(rejected: errors.ImportRejected) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=f"content.rows[{i.row}]" + (f".{i.column}" if i.column else ""),
                description=f"{i.reason}: {i.message}",
            )
            for i in rejected.issues
        ]
    )
