"""A company set up on provisioning's in-memory unit of work and in-memory peers, driven
through the use cases (and, for calls that are one transaction after the pool calls, the
handlers that run them at most once)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libs.common import call_context
from libs.common.clock import FakeClock
from libs.common.idempotency import IdempotencyKey
from licensing.provisioning.v1 import provisioning_pb2 as pb
from services.provisioning.adapters.billing import BillingGateway, BillingNotConfigured
from services.provisioning.api import convert
from services.provisioning.api.servicer import SERVICE_NAME, ProvisioningServicer
from services.provisioning.config import ProvisioningSettings
from services.provisioning.domain.model import User
from services.provisioning.use_cases import licenses, users
from services.provisioning.use_cases.imports import ImportService
from services.provisioning.use_cases.operations import PoolOperations, StepObserver
from tests.fakes.provisioning import InMemoryPool, InMemoryProvisioningUnitOfWork

R = TypeVar("R")
LEASE_SECONDS = 60.0


class Crash(BaseException):
    """The process dies at this point (nothing after it runs, nothing is cleaned up by
    the code that was running)."""


def key(company_id: uuid.UUID, request_id: str, *payload: object) -> IdempotencyKey:
    """A key whose fingerprint covers the payload, as the handlers' keys do."""
    return IdempotencyKey(company_id, request_id, hashlib.sha256(repr(payload).encode()).digest())


@dataclass
class Steps:
    """An observer of pool operation steps that fails (or crashes) at the one armed."""

    armed: dict[tuple[str, str], BaseException | Callable[[], None]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def at(self, kind: str, step: str, then: BaseException | Callable[[], None]) -> None:
        """After `step` of the next operation of `kind`: raise `then`, or run it."""
        self.armed[(kind, step)] = then

    async def __call__(self, kind: str, step: str) -> None:
        self.seen.append((kind, step))
        action = self.armed.pop((kind, step), None)
        if isinstance(action, BaseException):
            raise action
        if action is not None:
            action()


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    pool: InMemoryPool = field(default_factory=InMemoryPool)
    billing: BillingGateway = field(default_factory=BillingNotConfigured)
    steps: Steps = field(default_factory=Steps)
    company_id: uuid.UUID = field(default_factory=uuid.uuid4)
    offices: dict[str, uuid.UUID] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.uow = InMemoryProvisioningUnitOfWork(self.clock)
        observer: StepObserver = self.steps
        self.operations = PoolOperations(
            self.uow,  # type: ignore[arg-type]
            self.pool,
            self.billing,
            {**users.UNDO, **licenses.UNDO},
            convert.ENCODERS,
            LEASE_SECONDS,
            observer,
        )
        settings = ProvisioningSettings(import_chunk_size=2, import_parallel_calls=2)
        self.imports = ImportService(self.uow, self.pool, settings)  # type: ignore[arg-type]
        self.servicer = ProvisioningServicer(
            self.uow,  # type: ignore[arg-type]
            self.pool,
            self.operations,
            self.imports,
        )

    @property
    def state(self) -> Any:
        return self.uow.state

    def office(self, name: str, spare: dict[str, int] | None = None) -> uuid.UUID:
        office_id = self.offices.setdefault(name, uuid.uuid4())
        self.pool.office(self.company_id, office_id)
        for code, quantity in (spare or {}).items():
            self.pool.add_spare(self.company_id, office_id, code, quantity)
        return office_id

    def lease_runs_out(self) -> None:
        """Time passes on the database's clock: every driver's lease has ended."""
        self.state.db_now += LEASE_SECONDS + 1

    async def serving(self, method: str, call: Callable[[], Awaitable[R]]) -> R:
        """Runs `call` as the handler of `method` would run (the method's name is part of
        every idempotency key)."""
        token = call_context.begin(f"/{SERVICE_NAME}/{method}", None)
        try:
            return await call()
        finally:
            call_context.end(token)

    # --- users ------------------------------------------------------------------------

    def create_command(
        self,
        office: str,
        name: str,
        request_id: str,
        license_type: str = "connect",
        email: str | None = None,
        purchase: bool = False,
    ) -> users.CreateUser:
        office_id = self.offices[office]
        return users.CreateUser(
            key(self.company_id, request_id, office_id, name, email, license_type, purchase),
            self.company_id,
            office_id,
            name,
            email,
            license_type,
            purchase,
        )

    async def create_user(self, command: users.CreateUser) -> User:
        encoded = await users.create_user(command, self.uow, self.operations)  # type: ignore[arg-type]
        return self.user_of(pb.CreateUserResponse.FromString(encoded).user)

    def user_of(self, message: pb.User) -> User:
        found: User = self.state.users[uuid.UUID(message.user_id)]
        return found

    async def delete_user(self, user_id: uuid.UUID, request_id: str) -> pb.DeleteUserResponse:
        request = pb.DeleteUserRequest(
            request_id=request_id, company_id=str(self.company_id), user_id=str(user_id)
        )
        encoded = await self.serving("DeleteUser", lambda: self.servicer.DeleteUser(request, None))  # type: ignore[arg-type]
        return pb.DeleteUserResponse.FromString(encoded)

    async def assign(self, user_id: uuid.UUID, code: str, request_id: str) -> pb.License:
        command = licenses.AssignLicense(
            key(self.company_id, request_id, user_id, code), self.company_id, user_id, code
        )
        encoded = await licenses.assign_license(command, self.uow, self.operations)  # type: ignore[arg-type]
        return pb.AssignLicenseResponse.FromString(encoded).license

    async def add_addons(
        self, license_id: uuid.UUID, codes: tuple[str, ...], request_id: str
    ) -> pb.License:
        command = licenses.ChangeAddons(
            key(self.company_id, request_id, license_id, codes),
            self.company_id,
            license_id,
            codes,
        )
        encoded = await licenses.add_addons(command, self.uow, self.operations)  # type: ignore[arg-type]
        return pb.AddAddonsResponse.FromString(encoded).license
