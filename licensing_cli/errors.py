"""Failed calls explained in words, and the exit code they end the command with.

A service's error is a gRPC status with one `google.rpc.ErrorInfo` (an UPPER_SNAKE
reason and metadata) in `grpc-status-details-bin`, sometimes with further detail messages
(an allocation receipt, price mismatches). A status without ErrorInfo and code
UNAVAILABLE means the service could not be reached at all.

Exit codes: 2 when the request itself cannot succeed as sent (INVALID_ARGUMENT,
NOT_FOUND, FAILED_PRECONDITION), 1 for everything else (unreachable, timeouts, lost races,
internal errors), which may succeed when retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2
from rich.console import Console
from rich.markup import escape

from libs.common.reasons import Reason

# Imported for their side effect: the detail messages of our services become decodable.
from licensing.billing.v1 import billing_pb2 as _billing_pb2  # noqa: F401
from licensing.client import status_details
from licensing.credits.v1 import credits_pb2 as _credits_pb2  # noqa: F401
from licensing.pool.v1 import pool_pb2 as _pool_pb2  # noqa: F401
from licensing.provisioning.v1 import provisioning_pb2 as _provisioning_pb2  # noqa: F401
from licensing_cli.clients import CallFailed

USER_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

# What a reason means for the person at the terminal, and what they can do about it.
REASONS: dict[str, str] = {
    "NO_LICENSE_AVAILABLE": (
        "no license is available: the office has no spare one, none of its own returns "
        "is in grace, and the company pool has none claimable; purchase more "
        "(`licensing checkout purchase`) or free some"
    ),
    "REQUEST_ID_REUSED": (
        "this request id was already used for a different request; leave out "
        "--request-id to get a fresh one"
    ),
    "POOL_ENABLEMENT_IRREVERSIBLE": "a pool, once enabled, cannot be disabled",
    "LEGACY_PLAN_IN_CURRENCY": (
        "an active plan of this currency is a legacy plan; pooling needs bundle plans only"
    ),
    "POOL_ALREADY_ENABLED": "pooling is already on for this currency",
    "POOL_NOT_ENABLED": "pooling is off for this currency",
    "PERIOD_NOT_ENDED": (
        "the period has not ended for every office yet (offices bill on their own cycle "
        "anchors); close it from its end_time"
    ),
    "PRICING_MISMATCH": (
        "the active plans of this pooled currency disagree on the price of this license "
        "type; align the price books before purchasing"
    ),
    "CONTRACTED_PLAN": (
        "the plan is an invoiced contract: licenses cannot be removed here, contact your "
        "account team"
    ),
    "HOLD_EXPIRED": "the hold expired and its units went back; start over",
    "HOLD_NOT_PENDING": "the hold was already committed, released or expired",
    "QUOTE_EXPIRED": "the quote's hold ran out; ask for a new quote",
    "QUOTE_CHANGED": "what the quote held is no longer available; ask for a new quote",
    "QUOTE_ALREADY_USED": "this quote was already purchased",
    "NOT_ENOUGH_SPARE": "the office has fewer spare licenses of this type than asked",
    "INSUFFICIENT_CREDITS": (
        "the credits do not cover this usage and the office's policy is to reject overage"
    ),
    "TOO_MANY_THRESHOLDS": "a currency has at most 10 thresholds",
    "DUPLICATE_THRESHOLD": "the same threshold is given twice",
    "CREDIT_POOLING_ENABLED": (
        "unified credit pooling is on for this currency: grant to the company pool instead"
    ),
    "UNSUPPORTED_CURRENCY": "supported currencies: USD, JPY, CAD, AUD, GBP, NZD, EUR",
    "UNKNOWN_LICENSE_TYPE": "no such license type in the catalog",
    "NOT_A_USER_LICENSE": (
        "the type is in the catalog but is not a user license (e.g. connect, sell, support); "
        "base licenses such as phone_system are given with `licensing license assign`"
    ),
    "NOT_A_BASE_LICENSE": (
        "the type is in the catalog but is not a base license (auto_attendant, call_group, "
        "developer, phone_system)"
    ),
    "NOT_AN_ADDON": (
        "the type is in the catalog but is not an add-on of base licenses (e.g. "
        "call_recording, device_ip_phone)"
    ),
    "NOT_PHONE_SYSTEM": "extensions and numbers exist on Phone System licenses only",
    "LICENSE_IN_USE": ("the license is in use: unassign it first (`licensing license unassign`)"),
    "OFFICE_NOT_FOUND": (
        "no such office in this company; create it with `licensing office create`"
    ),
    "UNIT_IN_USE": "the license is in use: unassign it first",
    "IMPORT_ID_REUSED": "this import id was used for another file; choose a new import id",
    "POOL_UNAVAILABLE": "the pool service could not be reached by the service you called",
    "IMPORT_HAS_ERRORS": (
        "the file has problems and nothing was applied; `licensing import check` lists them"
    ),
    "MISSING_FIELD": "a required value is missing",
    "INVALID_FIELD": "a value is not valid",
}


@dataclass
class Explained:
    """A failed call taken apart."""

    service: str
    address: str
    method: str
    code: grpc.StatusCode
    message: str
    request_id: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unreachable(self) -> bool:
        return self.code == grpc.StatusCode.UNAVAILABLE and not self.reason

    @property
    def exit_code(self) -> int:
        return 2 if self.code in USER_ERRORS else 1

    hints: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "service": self.service,
                "address": self.address,
                "method": self.method,
                "code": self.code.name,
                "message": self.message,
                "reason": self.reason,
                "reason_text": _in_words(self.reason, self.hints) if self.reason else "",
                "metadata": self.metadata,
                "details": self.details,
                "request_id": self.request_id,
            }
        }


def _unpack(packed: any_pb2.Any) -> dict[str, Any] | None:
    name = packed.TypeName()
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    message = message_factory.GetMessageClass(descriptor)()
    if not packed.Unpack(message):
        return None
    body = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return {"type": name, **body}


def explain(failure: CallFailed) -> Explained:
    error = failure.error
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    found = Explained(
        failure.service,
        failure.address,
        failure.method,
        code,
        message or "",
        failure.request_id,
        hints=dict(failure.hints),
    )
    for packed in status_details(error):
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and not found.reason:
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            found.reason = info.reason
            found.domain = info.domain
            found.metadata = dict(sorted(info.metadata.items()))
        else:
            detail = _unpack(packed)
            if detail is not None:
                found.details.append(detail)
    return found


def _in_words(reason: str, hints: dict[str, str] | None = None) -> str:
    """The command's own hint, else the CLI's words, else the platform's meaning."""
    if hints and reason in hints:
        return hints[reason]
    if reason in REASONS:
        return REASONS[reason]
    known = Reason.__members__.get(reason)
    return known.meaning if known is not None else reason.replace("_", " ").lower()


def report(failure: CallFailed, console: Console, as_json: bool) -> int:
    """Prints the failure (to `console`, normally stderr) and returns the exit code."""
    found = explain(failure)
    if as_json:
        console.print_json(json.dumps(found.as_json(), sort_keys=True))
        return found.exit_code
    where = f"{found.service} ({found.address})"
    if found.unreachable:
        flag = f"--{found.service}"
        env = f"LICENSING_{found.service.upper()}"
        console.print(
            f"[red bold]error:[/red bold] could not reach the {found.service} service at "
            f"{found.address} (UNAVAILABLE: {escape(found.message)}).\n"
            f"Is the platform running? Start it with `make run`, or point {flag} / "
            f"{env} at the right address. `licensing services` shows what answers."
        )
    elif found.code == grpc.StatusCode.DEADLINE_EXCEEDED and not found.reason:
        console.print(
            f"[red bold]error:[/red bold] {where} did not answer {found.method} in time "
            "(DEADLINE_EXCEEDED); raise --timeout or try again."
        )
    else:
        console.print(
            f"[red bold]error:[/red bold] {where} refused {found.method}: "
            f"[bold]{found.code.name}[/bold]"
        )
        if found.message:
            console.print(f"  {escape(found.message)}")
        if found.reason:
            console.print(
                f"  reason: [bold]{found.reason}[/bold] — "
                f"{escape(_in_words(found.reason, found.hints))}"
            )
        for key, value in found.metadata.items():
            console.print(f"  {key}: {escape(value)}")
        for detail in found.details:
            console.print(f"  [dim]{escape(_summary(detail))}[/dim]")
    if found.request_id and found.code in RETRYABLE:
        console.print(
            f"  Retrying is safe with the same request id: --request-id {found.request_id}"
        )
    return found.exit_code


def _summary(detail: dict[str, Any]) -> str:
    """One line per known detail message; JSON for the rest."""
    kind = detail.get("type", "")
    if kind.endswith(".Receipt"):
        parts = [f"requested {detail.get('requested', 0)}"]
        for take in detail.get("taken", []):
            source = str(take.get("source", "")).removeprefix("ALLOCATION_SOURCE_").lower()
            parts.append(f"{take.get('quantity', 0)} from {source.replace('_', ' ')}")
        parts.append(f"shortfall {detail.get('shortfall', 0)}")
        for passed in detail.get("passed_over", []):
            why = str(passed.get("reason", "")).removeprefix("PASS_OVER_REASON_").lower()
            line = f"passed over {passed.get('quantity', 0)}: {why.replace('_', ' ')}"
            if passed.get("earliest_claimable_at"):
                line += f" (claimable from {passed['earliest_claimable_at']})"
            parts.append(line)
        return "allocation: " + "; ".join(parts)
    if kind.endswith(".BadRequest"):
        return "\n  ".join(
            f"{v.get('field', '')}: {v.get('description', '')}"
            for v in detail.get("field_violations", [])
        )
    body = {k: v for k, v in detail.items() if k != "type"}
    return f"{kind.rsplit('.', 1)[-1]}: {json.dumps(body, sort_keys=True)}"
