"""The answer to a call the service is too busy to serve: RESOURCE_EXHAUSTED OVERLOADED.

Besides its `ErrorInfo`, the status carries a `google.rpc.RetryInfo` saying how long the
caller should wait before trying again, so clients back off instead of hammering a
service that is already shedding load.
"""

from __future__ import annotations

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from libs.common import metrics
from libs.common.errors import ResourceExhausted

REASON = "OVERLOADED"
# Bounds of the suggested retry delay: soon enough to be useful, long enough to relieve.
MIN_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 10.0


def overloaded(message: str, retry_after: float) -> ResourceExhausted:
    """A load-shedding refusal that suggests retrying after `retry_after` seconds."""
    metrics.shed()
    delay = min(max(retry_after, MIN_RETRY_DELAY), MAX_RETRY_DELAY)
    retry_delay = duration_pb2.Duration()
    retry_delay.FromNanoseconds(round(delay * 1e9))
    return ResourceExhausted(
        REASON,
        message,
        {"retry_delay_ms": str(round(delay * 1000))},
        details=(error_details_pb2.RetryInfo(retry_delay=retry_delay),),
    )
