"""Provisioning settings: environment variables prefixed PROVISIONING_ (DATABASE_URL,
POOL_ADDRESS and BILLING_ADDRESS are shared with the other services)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from libs.common.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_POOL_ADDRESS,
    ServiceSettings,
    shared_setting,
)


class ProvisioningSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONING_", frozen=True, extra="ignore")

    database_url: str = shared_setting("PROVISIONING_", "DATABASE_URL", DEFAULT_DATABASE_URL)
    pool_address: str = shared_setting(
        "PROVISIONING_", "POOL_ADDRESS", DEFAULT_POOL_ADDRESS, "host:port of the pool service."
    )
    billing_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROVISIONING_BILLING_ADDRESS", "BILLING_ADDRESS"),
        description="host:port of the billing service; unset: nothing can be bought "
        "(purchase_if_needed fails with NO_LICENSE_AVAILABLE).",
    )
    billing_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Deadline per billing call (a purchase)."
    )
    billing_attempts: int = Field(
        default=4, ge=1, le=10, description="Tries of a purchase (same request_id)."
    )
    pool_timeout_seconds: float = Field(default=30.0, gt=0, description="Deadline per pool call.")
    pool_attempts: int = Field(default=4, ge=1, le=10, description="Tries of retryable calls.")
    operation_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A driver's lease on an operation that takes pool units; one whose "
        "driver died is recovered once the lease ran out.",
    )
    recovery_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often interrupted operations are looked for."
    )
    # Testing only: "<operation>:<step>" (e.g. "create_user:written") makes the process
    # exit right after that step, the way a crash would, so that tests can interrupt an
    # operation between two calls.
    crash_after_step: str = Field(default="")
    import_chunk_size: int = Field(
        default=1000, ge=1, le=10000, description="Units per pool call when importing."
    )
    import_parallel_calls: int = Field(default=4, ge=1, le=32)
    import_hold_seconds: int = Field(default=900, ge=60, le=900)
    import_max_attempts: int = Field(default=3, ge=1, le=10)
    import_max_rows: int = Field(default=20_000, ge=1, le=100_000)
