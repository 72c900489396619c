"""ProvisioningService over gRPC: proto ⇄ domain translation and field validation only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from libs.common import paging
from libs.common.errors import invalid
from libs.common.idempotency import Once, key_for
from libs.common.license_catalog import catalog as license_catalog
from libs.common.validation import optional_uuid_field, text_field, uuid_field
from licensing.provisioning.v1 import provisioning_pb2 as pb
from licensing.provisioning.v1 import provisioning_pb2_grpc
from services.provisioning.domain import catalog, errors
from services.provisioning.domain.csv_import import template
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
from services.provisioning.imports import ImportService
from services.provisioning.service import ProvisioningService

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


def _license_type_pb(code: str) -> pb.LicenseType:
    t = license_catalog()[code]
    return pb.LicenseType(
        code=t.code, display_name=t.name, category=t.category, poolable=t.poolable
    )


# --- proto -> domain ----------------------------------------------------------------------


def _method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


def _next(items: Sequence[User] | Sequence[License], size: int) -> str:
    if len(items) <= size:
        return ""
    last = items[size - 1]
    ident = last.user_id if isinstance(last, User) else last.license_id
    return paging.time_key_token(last.created_at, ident)


def _addon_codes(field: str, values: Sequence[str]) -> list[str]:
    if not values:
        raise invalid(field, "is required", "MISSING_FIELD")
    codes: list[str] = []
    for index, value in enumerate(values):
        code = catalog.addon_type(f"{field}[{index}]", value).code
        if code in codes:
            raise errors.duplicate_in_request(field, code)
        codes.append(code)
    return codes


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


def _import_id(value: str, required: bool) -> str:
    if not value and not required:
        return ""
    if not value:
        raise invalid("import_id", "is required to apply a file", "MISSING_FIELD")
    if not _IMPORT_ID.fullmatch(value):
        raise invalid("import_id", "must be 1 to 64 letters, digits, '-', '_' or '.'")
    return value


class ProvisioningServicer(provisioning_pb2_grpc.ProvisioningServiceServicer):
    def __init__(self, service: ProvisioningService, imports: ImportService) -> None:
        self._service = service
        self._imports = imports

    # --- catalog ----------------------------------------------------------------------

    async def ListLicenseTypes(
        self, request: pb.ListLicenseTypesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLicenseTypesResponse:
        size = paging.page_size(request.page_size)
        token = paging.decode_token(request.page_token)
        codes = [
            t.code
            for t in license_catalog().values()
            if not request.category or t.category == request.category
        ]
        start = 0
        if token:
            if not isinstance(token[0], str) or token[0] not in codes:
                raise invalid("page_token", "is not a token this service issued")
            start = codes.index(token[0]) + 1
        page = codes[start : start + size]
        more = start + size < len(codes)
        return pb.ListLicenseTypesResponse(
            license_types=[_license_type_pb(c) for c in page],
            next_page_token=paging.encode_token([page[-1]]) if more and page else "",
        )

    # --- users ------------------------------------------------------------------------

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateUserResponse:
        company_id = uuid_field("company_id", request.company_id)
        office_id = uuid_field("office_id", request.office_id)
        name = text_field("display_name", request.display_name.strip(), 200)
        email = text_field("email", request.email.strip(), 254, required=False) or None
        if email and not _EMAIL.fullmatch(email):
            raise invalid("email", f"{email[:64]!r} is not an e-mail address")
        code = catalog.user_license_type("license_type", request.license_type).code
        once: Once[User] = Once(
            key_for(_method("CreateUser"), company_id, request),
            lambda u: pb.CreateUserResponse(user=user_pb(u)).SerializeToString(),
        )
        encoded = await self._service.create_user(
            company_id, office_id, name, email, code, request.purchase_if_needed, once
        )
        return pb.CreateUserResponse.FromString(encoded)

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUserResponse:
        user = await self._service.get_user(
            uuid_field("company_id", request.company_id), uuid_field("user_id", request.user_id)
        )
        return pb.GetUserResponse(user=user_pb(user))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        company_id = uuid_field("company_id", request.company_id)
        size = paging.page_size(request.page_size)
        users = await self._service.list_users(
            company_id,
            optional_uuid_field("office_id", request.office_id),
            text_field("query", request.query.strip(), 200, required=False) or None,
            paging.time_key(request.page_token),
            size + 1,
        )
        return pb.ListUsersResponse(
            users=[user_pb(u) for u in users[:size]], next_page_token=_next(users, size)
        )

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteUserResponse:
        company_id = uuid_field("company_id", request.company_id)
        user_id = uuid_field("user_id", request.user_id)
        once: Once[list[uuid.UUID]] = Once(
            key_for(_method("DeleteUser"), company_id, request),
            lambda units: pb.DeleteUserResponse(
                returned_unit_ids=[str(u) for u in units]
            ).SerializeToString(),
        )
        encoded = await self._service.delete_user(company_id, user_id, once)
        return pb.DeleteUserResponse.FromString(encoded)

    async def ChangeUserLicense(
        self, request: pb.ChangeUserLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeUserLicenseResponse:
        company_id = uuid_field("company_id", request.company_id)
        user_id = uuid_field("user_id", request.user_id)
        code = catalog.user_license_type("license_type", request.license_type).code
        once: Once[tuple[User, uuid.UUID | None]] = Once(
            key_for(_method("ChangeUserLicense"), company_id, request),
            lambda r: pb.ChangeUserLicenseResponse(
                user=user_pb(r[0]), returned_unit_id=str(r[1]) if r[1] else ""
            ).SerializeToString(),
        )
        encoded = await self._service.change_user_license(company_id, user_id, code, once)
        return pb.ChangeUserLicenseResponse.FromString(encoded)

    # --- base licenses ----------------------------------------------------------------

    def _license_once(self, method: str, company_id: uuid.UUID, request: object) -> Once[License]:
        response = {
            "AssignLicense": pb.AssignLicenseResponse,
            "ReassignLicense": pb.ReassignLicenseResponse,
            "AddAddons": pb.AddAddonsResponse,
            "SetExtension": pb.SetExtensionResponse,
        }[method]
        return Once(
            key_for(_method(method), company_id, request),  # type: ignore[arg-type]
            lambda held: response(license=license_pb(held)).SerializeToString(),
        )

    async def AssignLicense(
        self, request: pb.AssignLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.AssignLicenseResponse:
        company_id = uuid_field("company_id", request.company_id)
        user_id = uuid_field("user_id", request.user_id)
        code = catalog.base_license_type("license_type", request.license_type).code
        once = self._license_once("AssignLicense", company_id, request)
        encoded = await self._service.assign_license(company_id, user_id, code, once)
        return pb.AssignLicenseResponse.FromString(encoded)

    async def UnassignLicense(
        self, request: pb.UnassignLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnassignLicenseResponse:
        company_id = uuid_field("company_id", request.company_id)
        license_id = uuid_field("license_id", request.license_id)
        once: Once[list[uuid.UUID]] = Once(
            key_for(_method("UnassignLicense"), company_id, request),
            lambda units: pb.UnassignLicenseResponse(
                returned_unit_ids=[str(u) for u in units]
            ).SerializeToString(),
        )
        encoded = await self._service.unassign_license(company_id, license_id, once)
        return pb.UnassignLicenseResponse.FromString(encoded)

    async def ReassignLicense(
        self, request: pb.ReassignLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReassignLicenseResponse:
        company_id = uuid_field("company_id", request.company_id)
        license_id = uuid_field("license_id", request.license_id)
        user_id = uuid_field("user_id", request.user_id)
        once = self._license_once("ReassignLicense", company_id, request)
        encoded = await self._service.reassign_license(company_id, license_id, user_id, once)
        return pb.ReassignLicenseResponse.FromString(encoded)

    async def GetLicense(
        self, request: pb.GetLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLicenseResponse:
        held = await self._service.get_license(
            uuid_field("company_id", request.company_id),
            uuid_field("license_id", request.license_id),
        )
        return pb.GetLicenseResponse(license=license_pb(held))

    async def SearchLicenses(
        self, request: pb.SearchLicensesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchLicensesResponse:
        company_id = uuid_field("company_id", request.company_id)
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
        licenses = await self._service.search_licenses(
            company_id,
            optional_uuid_field("office_id", request.office_id),
            code,
            optional_uuid_field("user_id", request.user_id),
            ext_key,
            number,
            paging.time_key(request.page_token),
            size + 1,
        )
        return pb.SearchLicensesResponse(
            licenses=[license_pb(h) for h in licenses[:size]],
            next_page_token=_next(licenses, size),
        )

    async def AddAddons(
        self, request: pb.AddAddonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddAddonsResponse:
        company_id = uuid_field("company_id", request.company_id)
        license_id = uuid_field("license_id", request.license_id)
        codes = _addon_codes("addon_types", request.addon_types)
        once = self._license_once("AddAddons", company_id, request)
        encoded = await self._service.add_addons(company_id, license_id, codes, once)
        return pb.AddAddonsResponse.FromString(encoded)

    async def RemoveAddons(
        self, request: pb.RemoveAddonsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveAddonsResponse:
        company_id = uuid_field("company_id", request.company_id)
        license_id = uuid_field("license_id", request.license_id)
        codes = _addon_codes("addon_types", request.addon_types)
        once: Once[tuple[License, list[uuid.UUID]]] = Once(
            key_for(_method("RemoveAddons"), company_id, request),
            lambda r: pb.RemoveAddonsResponse(
                license=license_pb(r[0]), returned_unit_ids=[str(u) for u in r[1]]
            ).SerializeToString(),
        )
        encoded = await self._service.remove_addons(company_id, license_id, codes, once)
        return pb.RemoveAddonsResponse.FromString(encoded)

    async def SetExtension(
        self, request: pb.SetExtensionRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetExtensionResponse:
        company_id = uuid_field("company_id", request.company_id)
        license_id = uuid_field("license_id", request.license_id)
        ext_key, number = _ext_key(request.ext_key), _number(request.number)
        once = self._license_once("SetExtension", company_id, request)
        encoded = await self._service.set_extension(company_id, license_id, ext_key, number, once)
        return pb.SetExtensionResponse.FromString(encoded)

    async def TerminateLicense(
        self, request: pb.TerminateLicenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.TerminateLicenseResponse:
        company_id = uuid_field("company_id", request.company_id)
        subscription_id = uuid_field("subscription_id", request.subscription_id)
        once: Once[Subscription] = Once(
            key_for(_method("TerminateLicense"), company_id, request),
            lambda s: pb.TerminateLicenseResponse(
                subscription=pb.Subscription(
                    subscription_id=str(s.subscription_id),
                    license_type=s.license_type,
                    office_id=str(s.office_id),
                    state=s.state,
                )
            ).SerializeToString(),
        )
        encoded = await self._service.terminate(company_id, subscription_id, once)
        return pb.TerminateLicenseResponse.FromString(encoded)

    # --- mass configuration -----------------------------------------------------------

    async def GetMassConfigurationTemplate(
        self, request: pb.GetMassConfigurationTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMassConfigurationTemplateResponse:
        return pb.GetMassConfigurationTemplateResponse(
            content=template(request.header_only),
            file_name="mass-configuration-template.csv",
            content_type="text/csv",
            addon_types=[_license_type_pb(t.code) for t in catalog.of_category(catalog.BASE_ADDON)],
        )

    async def MassConfigure(
        self, request: pb.MassConfigureRequest, context: grpc.aio.ServicerContext
    ) -> pb.MassConfigureResponse:
        company_id = uuid_field("company_id", request.company_id)
        office_id = uuid_field("office_id", request.office_id)
        import_id = _import_id(request.import_id, required=not request.validate_only)
        if len(request.content) > MAX_CONTENT:
            raise invalid("content", f"is larger than {MAX_CONTENT // (1024 * 1024)} MiB")
        if request.validate_only:
            job = await self._imports.dry_run(company_id, office_id, import_id, request.content)
        else:
            try:
                job = await self._imports.start(company_id, office_id, import_id, request.content)
            except errors.ImportRejected as rejected:
                rejected.details = (
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field=f"content.rows[{i.row}]"
                                + (f".{i.column}" if i.column else ""),
                                description=f"{i.reason}: {i.message}",
                            )
                            for i in rejected.issues
                        ]
                    ),
                )
                raise
        return pb.MassConfigureResponse(import_job=import_pb(job))

    async def GetImport(
        self, request: pb.GetImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetImportResponse:
        job = await self._imports.get(
            uuid_field("company_id", request.company_id), _import_id(request.import_id, True)
        )
        return pb.GetImportResponse(import_job=import_pb(job))

    async def WatchImport(
        self, request: pb.WatchImportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchImportResponse]:
        company_id = uuid_field("company_id", request.company_id)
        import_id = _import_id(request.import_id, True)
        async for job in self._imports.watch(company_id, import_id):
            yield pb.WatchImportResponse(import_job=import_pb(job))
