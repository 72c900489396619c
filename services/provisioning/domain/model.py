"""What provisioning keeps: users, base licenses with add-ons, imports (docs/product.md,
"Provisioning")."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class User:
    user_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    display_name: str
    email: str | None
    license_type: str
    license_unit_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Addon:
    addon_id: uuid.UUID  # the pool unit
    license_type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class License:
    """A base license: a pool unit assigned to a user, with its add-ons."""

    license_id: uuid.UUID  # the pool unit, also the subscription UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    user_id: uuid.UUID
    ext_key: str | None
    number: str | None
    addons: tuple[Addon, ...]
    created_at: datetime
    updated_at: datetime

    def addon(self, code: str) -> Addon | None:
        return next((a for a in self.addons if a.license_type == code), None)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A pool unit as reported after a termination."""

    subscription_id: uuid.UUID
    license_type: str
    office_id: uuid.UUID
    state: str


class ImportState(enum.StrEnum):
    VALIDATED = "VALIDATED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ImportStage(enum.StrEnum):
    NONE = "NONE"
    RESERVING = "RESERVING"
    COMMITTING = "COMMITTING"
    FINALIZING = "FINALIZING"
    ROLLING_BACK = "ROLLING_BACK"


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A problem in a CSV file. `row` as a spreadsheet numbers it (header = 1; 0 = file)."""

    row: int
    column: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class QuoteLine:
    license_type: str
    needed: int
    own_spare: int
    own_returns_in_grace: int
    pool_claimable: int

    @property
    def shortfall(self) -> int:
        available = self.own_spare + self.own_returns_in_grace + self.pool_claimable
        return max(0, self.needed - available)


@dataclass(frozen=True, slots=True)
class Progress:
    units_total: int = 0
    units_reserved: int = 0
    units_committed: int = 0
    rows_applied: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportJob:
    import_id: str
    company_id: uuid.UUID
    office_id: uuid.UUID
    state: ImportState
    stage: ImportStage
    row_count: int
    errors: tuple[RowIssue, ...]
    error_count: int
    warnings: tuple[RowIssue, ...]
    quote: tuple[QuoteLine, ...]
    progress: Progress
    failure: Failure | None
    rows_reconfiguring: int
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def ended(self) -> bool:
        return self.state in (ImportState.SUCCEEDED, ImportState.FAILED)


@dataclass(frozen=True, slots=True)
class StoredImport:
    """An import as stored: its job, the file's fingerprint, the attempt being applied."""

    job: ImportJob
    fingerprint: bytes
    attempt: int
    chunk_size: int


@dataclass(frozen=True, slots=True)
class StoredStep:
    """One pool hold of an import's attempt, as recorded when it was made."""

    step: int
    license_type: str
    hold_id: uuid.UUID | None
    unit_ids: tuple[uuid.UUID, ...]
    shortfall: int
    committed: bool
