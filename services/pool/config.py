"""Pool service settings: environment variables prefixed POOL_ (DATABASE_URL is shared)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from libs.common.event_stream import EventStreamSettings
from libs.common.settings import DEFAULT_DATABASE_URL, ServiceSettings, shared_setting


class PoolSettings(ServiceSettings, EventStreamSettings):
    model_config = SettingsConfigDict(env_prefix="POOL_", frozen=True, extra="ignore")

    database_url: str = shared_setting("POOL_", "DATABASE_URL", DEFAULT_DATABASE_URL)
    grace_seconds: float = Field(default=1800, ge=0, description="Grace period of returned units.")
    hold_default_seconds: int = Field(default=300, ge=1)
    hold_max_seconds: int = Field(default=900, ge=1)
    sweep_interval_seconds: float = Field(default=1.0, gt=0, description="Hold expiry sweep.")
    max_batch: int = Field(default=256, ge=1, description="Allocations per pool per transaction.")
    max_waiting: int = Field(default=2048, ge=1, description="Allocations queued per pool.")
    max_batch_pools: int = Field(
        default=64, ge=1, description="Pools (company, currency) one allocation transaction serves."
    )
    allocation_writers: int = Field(
        default=2, ge=1, description="Allocation transactions running at once (per process)."
    )
    history_retention_days: float = Field(
        default=400, gt=0, description="How far back unit history and as-of snapshots reach."
    )
