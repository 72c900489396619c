"""Billing service settings: environment variables prefixed BILLING_ (DATABASE_URL is
shared; the pool service is found through POOL_ADDRESS and the credits service through
CREDITS_ADDRESS, as `make run` sets them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from libs.common.event_stream import EventStreamSettings
from libs.common.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_POOL_ADDRESS,
    ServiceSettings,
    shared_setting,
)


class BillingSettings(ServiceSettings, EventStreamSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", frozen=True, extra="ignore")

    database_url: str = shared_setting("BILLING_", "DATABASE_URL", DEFAULT_DATABASE_URL)
    pool_address: str = shared_setting(
        "BILLING_", "POOL_ADDRESS", DEFAULT_POOL_ADDRESS, "host:port of the pool service."
    )
    pool_deadline_seconds: float = Field(default=5.0, gt=0, description="Per pool call.")
    pool_attempts: int = Field(
        default=4, ge=1, description="Tries of a pool call that carries a request_id."
    )
    pool_retry_max_wait_seconds: float = Field(default=1.0, ge=0)
    credits_address: str = shared_setting(
        "BILLING_",
        "CREDITS_ADDRESS",
        "",
        "host:port of the credits service: billing keeps each office's credit account in"
        " step with its plan and bills the credit overage. Empty: no credits service (no"
        " accounts kept, invoices carry no overage and say so).",
    )
    credits_deadline_seconds: float = Field(default=5.0, gt=0, description="Per credits call.")
    quote_hold_seconds: int = Field(
        default=120, ge=1, le=900, description="How long a held quote keeps its pool units."
    )
    purchase_hold_seconds: int = Field(
        default=300, ge=1, le=900, description="Hold of pool units during a purchase."
    )
    purchase_lease_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A purchase driver's lease, renewed while it drives: a crashed driver's"
        " purchase is taken over or recovered this long after its last renewal.",
    )
    purchase_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a retry of a purchase another driver holds waits for it when"
        " the call has no deadline (with one, it waits until shortly before the deadline).",
    )
    recovery_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often interrupted purchases are looked for (and once at start).",
    )
    # Testing only: the process exits right after this purchase step (e.g. "reserve"),
    # the way a crash would, so tests can interrupt a purchase between two pool calls.
    crash_after_step: str = Field(default="")
