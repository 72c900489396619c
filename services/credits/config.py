"""Credits service settings: environment variables prefixed CREDITS_ (DATABASE_URL is
shared)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from libs.common.event_stream import EventStreamSettings
from libs.common.settings import DEFAULT_DATABASE_URL, ServiceSettings, shared_setting


class CreditsSettings(ServiceSettings, EventStreamSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITS_", frozen=True, extra="ignore")

    database_url: str = shared_setting("CREDITS_", "DATABASE_URL", DEFAULT_DATABASE_URL)
    max_batch: int = Field(default=256, ge=1, description="Usage records per transaction.")
    max_waiting: int = Field(default=4096, ge=1, description="Usage records queued per pool.")
    max_batch_pools: int = Field(
        default=64, ge=1, description="(company, currency) keys one usage transaction serves."
    )
    usage_writers: int = Field(
        default=2, ge=1, description="Usage transactions running at once (per process)."
    )
    max_batch_records: int = Field(
        default=1000, ge=1, le=10_000, description="Records per BatchRecordUsage call."
    )
    future_tolerance_seconds: float = Field(
        default=300, ge=0, description="How far in the future a usage may be dated."
    )
    purge_interval_seconds: float = Field(
        default=3600, gt=0, description="How often old idempotency keys are purged."
    )
