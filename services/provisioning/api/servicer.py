"""Provisioning's gRPC handlers: check the request and build the command (`convert`), run
the use case, convert the result.

Mutating calls answer encoded bytes, which the server sends as they are: a pool
operation's driver stores and answers its own (encoded as `convert.ENCODERS` says); the
others are one local transaction after their pool calls, at most once per request_id
(`handlers.once_after`). The generated base class is not inherited: its methods are typed to
answer messages, and registration only needs the method names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message

from libs.common.handlers import OfCompany, mutation, once_after
from libs.common.validation import uuid_field
from licensing.provisioning.v1 import provisioning_pb2 as pb
from services.provisioning.adapters.pool import PoolGateway
from services.provisioning.api import convert
from services.provisioning.domain import catalog, errors
from services.provisioning.domain.csv_import import template
from services.provisioning.unit_of_work import ProvisioningUnitOfWork, Tx
from services.provisioning.use_cases import licenses, users
from services.provisioning.use_cases.imports import ImportService
from services.provisioning.use_cases.operations import PoolOperations

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE_NAME = convert.SERVICE_NAME
ERROR_DOMAIN = convert.ERROR_DOMAIN


C = TypeVar("C", bound=OfCompany)
P = TypeVar("P")
R = TypeVar("R")


class ProvisioningServicer:
    def __init__(
        self,
        uow: ProvisioningUnitOfWork,
        pool: PoolGateway,
        operations: PoolOperations,
        imports: ImportService,
    ) -> None:
        self._uow = uow
        self._pool = pool
        self._operations = operations
        self._imports = imports

    async def _once_after_pool(
        self,
        request: Message,
        command: C,
        in_pool: Callable[[C, ProvisioningUnitOfWork, PoolGateway], Awaitable[P]],
        locally: Callable[[C, P, Tx], Awaitable[R]],
        encode: Callable[[R], Message],
    ) -> bytes:
        """The pool calls first (not for a request answered already: its response is
        replayed), then the local transaction, at most once per request_id."""
        in_the_pool = partial(in_pool, command, self._uow, self._pool)
        return await once_after(
            self._uow, request, command.company_id, in_the_pool, partial(locally, command), encode
        )

    # --- catalog ----------------------------------------------------------------------

    async def ListLicenseTypes(
        self, request: pb.ListLicenseTypesRequest, context: Context
    ) -> pb.ListLicenseTypesResponse:
        return convert.license_types_page(request)

    # --- users ------------------------------------------------------------------------

    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> bytes:
        command = convert.create_user(request)
        return await users.create_user(command, self._uow, self._operations)

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        company_id = convert.company(request)
        user = await users.get_user(self._uow, company_id, uuid_field("user_id", request.user_id))
        return pb.GetUserResponse(user=convert.user_pb(user))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: Context
    ) -> pb.ListUsersResponse:
        query = convert.list_users(request)
        return convert.users_page(await users.list_users(self._uow, query), query.limit - 1)

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> bytes:
        command = convert.delete_user(request)
        return await self._once_after_pool(
            request, command, users.return_user_units, users.delete_user, convert.deleted_user
        )

    async def ChangeUserLicense(
        self, request: pb.ChangeUserLicenseRequest, context: Context
    ) -> bytes:
        command = convert.change_user_license(request)
        return await users.change_user_license(command, self._uow, self._operations)

    # --- base licenses ----------------------------------------------------------------

    async def AssignLicense(self, request: pb.AssignLicenseRequest, context: Context) -> bytes:
        command = convert.assign_license(request)
        return await licenses.assign_license(command, self._uow, self._operations)

    async def UnassignLicense(self, request: pb.UnassignLicenseRequest, context: Context) -> bytes:
        command = convert.license_command(request)
        return await self._once_after_pool(
            request,
            command,
            licenses.return_license_units,
            licenses.unassign_license,
            convert.unassigned,
        )

    async def ReassignLicense(self, request: pb.ReassignLicenseRequest, context: Context) -> bytes:
        command = convert.reassign_license(request)
        return await self._once_after_pool(
            request,
            command,
            licenses.reassign_in_pool,
            licenses.reassign_license,
            convert.reassigned,
        )

    async def GetLicense(
        self, request: pb.GetLicenseRequest, context: Context
    ) -> pb.GetLicenseResponse:
        company_id = convert.company(request)
        license_id = uuid_field("license_id", request.license_id)
        held = await licenses.get_license(self._uow, company_id, license_id)
        return pb.GetLicenseResponse(license=convert.license_pb(held))

    async def SearchLicenses(
        self, request: pb.SearchLicensesRequest, context: Context
    ) -> pb.SearchLicensesResponse:
        query = convert.search_licenses(request)
        found = await licenses.search_licenses(self._uow, query)
        return convert.licenses_page(found, query.limit - 1)

    async def AddAddons(self, request: pb.AddAddonsRequest, context: Context) -> bytes:
        command = convert.change_addons(request)
        return await licenses.add_addons(command, self._uow, self._operations)

    async def RemoveAddons(self, request: pb.RemoveAddonsRequest, context: Context) -> bytes:
        command = convert.change_addons(request)
        return await self._once_after_pool(
            request,
            command,
            licenses.return_addons,
            licenses.remove_addons,
            convert.removed_addons,
        )

    SetExtension = mutation(convert.set_extension, licenses.set_extension, convert.extension_set)

    async def TerminateLicense(
        self, request: pb.TerminateLicenseRequest, context: Context
    ) -> bytes:
        command = convert.terminate_license(request)
        return await self._once_after_pool(
            request,
            command,
            licenses.terminate_in_pool,
            licenses.terminated,
            convert.terminated,
        )

    # --- mass configuration -----------------------------------------------------------

    async def GetMassConfigurationTemplate(
        self, request: pb.GetMassConfigurationTemplateRequest, context: Context
    ) -> pb.GetMassConfigurationTemplateResponse:
        return pb.GetMassConfigurationTemplateResponse(
            content=template(request.header_only),
            file_name="mass-configuration-template.csv",
            content_type="text/csv",
            addon_types=[
                convert.license_type_pb(t.code) for t in catalog.of_category(catalog.BASE_ADDON)
            ],
        )

    async def MassConfigure(
        self, request: pb.MassConfigureRequest, context: Context
    ) -> pb.MassConfigureResponse:
        file = convert.import_file(request)
        if request.validate_only:
            job = await self._imports.dry_run(file)
        else:
            try:
                job = await self._imports.start(file)
            except errors.ImportRejected as rejected:
                rejected.details = (convert.rejected_rows(rejected),)
                raise
        return pb.MassConfigureResponse(import_job=convert.import_pb(job))

    async def GetImport(
        self, request: pb.GetImportRequest, context: Context
    ) -> pb.GetImportResponse:
        company_id = convert.company(request)
        job = await self._imports.get(company_id, convert.import_id(request.import_id, True))
        return pb.GetImportResponse(import_job=convert.import_pb(job))

    async def WatchImport(
        self, request: pb.WatchImportRequest, context: Context
    ) -> AsyncIterator[pb.WatchImportResponse]:
        company_id = convert.company(request)
        import_id = convert.import_id(request.import_id, True)
        async for job in self._imports.watch(company_id, import_id):
            yield pb.WatchImportResponse(import_job=convert.import_pb(job))
