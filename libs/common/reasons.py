"""Every `google.rpc.ErrorInfo` reason the platform answers, defined once.

A reason is machine readable (UPPER_SNAKE, its member name is what goes on the wire),
comes with one status code, and has a meaning in words that the command line prints.
Services raise `Reason.X.error(message, metadata)`; callers of a peer match on
`error.reason is Reason.X`, never on strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from libs.common.errors import ErrorKind

if TYPE_CHECKING:
    from libs.common.errors import DomainError

_INVALID = ErrorKind.INVALID_ARGUMENT
_NOT_FOUND = ErrorKind.NOT_FOUND
_RULE = ErrorKind.FAILED_PRECONDITION
_ABORTED = ErrorKind.ABORTED
_DOWN = ErrorKind.UNAVAILABLE
_BUSY = ErrorKind.RESOURCE_EXHAUSTED
_LATE = ErrorKind.DEADLINE_EXCEEDED
_DENIED = ErrorKind.PERMISSION_DENIED
_WHO = ErrorKind.UNAUTHENTICATED
_RANGE = ErrorKind.OUT_OF_RANGE


class Reason(enum.Enum):
    """A reason, its status code and its meaning."""

    kind: ErrorKind
    meaning: str

    def __init__(self, kind: ErrorKind, meaning: str) -> None:
        self.kind = kind
        self.meaning = meaning

    def error(
        self,
        message: str,
        metadata: Mapping[str, str] | None = None,
        details: tuple[Any, ...] = (),
    ) -> DomainError:
        """The domain error of this reason (its class follows the status code)."""
        from libs.common.errors import error_of

        return error_of(self, message, metadata, details)

    @classmethod
    def parse(cls, name: str) -> Reason | None:
        """The reason a peer named, if this registry knows it."""
        return cls.__members__.get(name)

    # --- the request itself (every service) --------------------------------------------
    MISSING_FIELD = _INVALID, "a required field is empty"
    INVALID_FIELD = _INVALID, "a field has a value the method does not accept"
    MALFORMED_ID = _INVALID, "an id is not a UUID"
    MALFORMED_REQUEST = _INVALID, "the request bytes do not decode as the method's message"
    INVALID_CHARACTERS = _INVALID, "a text field holds a character that cannot be stored (NUL)"
    INVALID_TIMESTAMP = _INVALID, "a timestamp is outside 0001-01-01..9999-12-31"
    INVALID_TIME = _INVALID, "a time is outside the range the method accepts"
    VALUE_NOT_STORABLE = _INVALID, "a value in the request cannot be stored"
    UNSUPPORTED_CURRENCY = _INVALID, "the currency is not one the platform bills in"
    UNKNOWN_LICENSE_TYPE = _INVALID, "no such license type in the catalog"
    INVALID_QUANTITY = _INVALID, "the quantity is outside the range the method accepts"
    REQUEST_ID_REUSED = _INVALID, "the request_id was already used for another request"
    # --- event streams (pool, credits, billing) ------------------------------------------
    INVALID_CURSOR = _INVALID, "the cursor is not one this service issued for the company"
    UNKNOWN_EVENT_TYPE = _INVALID, "no such event type in the service's stream"
    CURSOR_EXPIRED = _RANGE, "events after the cursor are past the retention: start again"
    # --- overload, races and dependencies (every service) ------------------------------
    OVERLOADED = _BUSY, "the service is too busy to answer in time; retry later"
    DEADLINE_EXCEEDED = _LATE, "the caller's deadline passed before the work could run"
    REQUEST_ID_RACE = _ABORTED, "a request with the same request_id ran at the same time"
    CONCURRENT_CHANGE = _ABORTED, "the thing changed meanwhile; retry with the same request_id"
    DATABASE_UNAVAILABLE = _DOWN, "the service's database cannot be reached; retry later"
    POOL_UNAVAILABLE = _DOWN, "the pool service cannot be reached; retry later"
    BILLING_UNAVAILABLE = _DOWN, "the billing service cannot be reached; retry later"
    CREDITS_UNAVAILABLE = _DOWN, "the credits service cannot be reached; retry later"
    PEER_UNAVAILABLE = _DOWN, "a service this one depends on cannot be reached; retry later"
    # --- identity ------------------------------------------------------------------------
    CALLER_NOT_ALLOWED = _DENIED, "the caller's identity may not call this method"
    COMPANY_NOT_IN_SCOPE = _DENIED, "the caller's token does not cover this company"
    UNAUTHENTICATED_CALLER = _WHO, "the call carries no valid identity or token"
    # --- pool ----------------------------------------------------------------------------
    OFFICE_NOT_FOUND = _NOT_FOUND, "no such office in this company"
    UNIT_NOT_FOUND = _NOT_FOUND, "no such license unit in this company"
    HOLD_NOT_FOUND = _NOT_FOUND, "no such hold in this company"
    RECEIPT_NOT_FOUND = _NOT_FOUND, "no such allocation receipt in this company"
    NO_LICENSE_AVAILABLE = _RULE, "not enough units: purchase the shortfall or free some"
    NOT_ENOUGH_SPARE = _RULE, "the office has fewer spare units of the type than asked"
    HOLD_EXPIRED = _RULE, "the hold expired: its units went back where they were"
    HOLD_NOT_PENDING = _RULE, "the hold was already committed, released or expired"
    INVALID_TTL = _INVALID, "the hold lifetime is outside what the pool allows"
    ASSIGNEE_COUNT_MISMATCH = _INVALID, "assignees do not match the quantity"
    DUPLICATE_ASSIGNEE = _INVALID, "the same assignee is named twice"
    UNIT_IN_USE = _RULE, "the unit is assigned: unassign it first"
    UNIT_NOT_ASSIGNED = _RULE, "the unit is not assigned"
    UNIT_NOT_RETURNABLE = _RULE, "the unit is not in a state it can be returned from"
    OFFICE_HAS_UNITS = _RULE, "the office has live units: its currency cannot change"
    LEGACY_PLAN_IN_CURRENCY = _RULE, "an office of the currency is on a legacy plan"
    POOL_ALREADY_ENABLED = _RULE, "the pool of this currency is already enabled"
    POOL_NOT_ENABLED = _RULE, "the company has no enabled pool in this currency"
    POOL_ENABLEMENT_IRREVERSIBLE = _RULE, "an enabled pool cannot be disabled"
    OFFICE_CHANGED = _ABORTED, "the office changed while the request waited; retry"
    NOT_RUN = _ABORTED, "the request was not run (its batch failed); retry"
    SNAPSHOT_TIME_OUT_OF_RANGE = _RANGE, "the as-of instant is in the future or past the history"
    # --- billing -------------------------------------------------------------------------
    PLAN_NOT_FOUND = _NOT_FOUND, "no such plan in this company"
    QUOTE_NOT_FOUND = _NOT_FOUND, "no such quote in this company"
    PURCHASE_NOT_FOUND = _NOT_FOUND, "no such purchase in this company"
    INVOICE_NOT_FOUND = _NOT_FOUND, "no invoice for this company and period"
    NO_ACTIVE_PLAN = _RULE, "the office has no active plan"
    OFFICE_HAS_ACTIVE_PLAN = _RULE, "the office already has an active plan"
    PRICING_MISMATCH = _RULE, "plans of the pooled currency price the type differently"
    LICENSE_TYPE_NOT_PRICED = _RULE, "the office's plan has no price for the type"
    CONTRACTED_PLAN = _RULE, "a contracted plan: contact your account team to remove licenses"
    INVALID_PRICE = _INVALID, "a price is negative, too large or in another currency"
    INVALID_PERIOD = _INVALID, "the period is not YYYY-MM"
    PERIOD_NOT_STARTED = _RULE, "the period has not started yet"
    PERIOD_NOT_ENDED = _RULE, "a plan's cycle in the period has not ended yet"
    PLAN_NOT_STARTED = _RULE, "the plan starts after the period"
    QUOTE_EXPIRED = _RULE, "the quote's hold expired: ask for a new quote"
    QUOTE_CHANGED = _RULE, "prices or the cycle changed since the quote: ask for a new one"
    QUOTE_ALREADY_USED = _RULE, "the quote was already purchased"
    QUOTE_MISMATCH = _INVALID, "the purchase differs from its quote"
    PURCHASE_IN_PROGRESS = _ABORTED, "the purchase is under way: retry with the same request_id"
    PURCHASES_IN_PROGRESS = _ABORTED, "purchases of the period are under way: retry shortly"
    PURCHASE_INTERRUPTED = _ABORTED, "the purchase was interrupted and undone: retry"
    # --- credits -------------------------------------------------------------------------
    USAGE_NOT_FOUND = _NOT_FOUND, "no such usage record in this company"
    INSUFFICIENT_CREDITS = _RULE, "not enough credits and the account rejects overage"
    CREDIT_POOLING_ENABLED = _RULE, "unified credit pooling is on for the currency"
    CURRENCY_MISMATCH = _INVALID, "the currency is not the account's"
    NOT_PRIMARY_OFFICE = _RULE, "AI agent credits live on the primary office only"
    NO_PRIMARY_OFFICE = _RULE, "the company has no primary office"
    OFFICE_CURRENCY_LOCKED = _RULE, "the office has ledger entries: its currency cannot change"
    OCCURRED_IN_FUTURE = _INVALID, "the usage is dated in the future"
    ACCOUNT_CHANGED = _ABORTED, "the account changed while the request waited; retry"
    INVALID_AMOUNT = _INVALID, "the amount is not positive"
    AMOUNT_TOO_LARGE = _INVALID, "the amount is larger than the platform accepts"
    UNKNOWN_USAGE_KIND = _INVALID, "no such usage kind"
    TOO_MANY_RECORDS = _INVALID, "the batch holds more records than allowed"
    TOO_MANY_THRESHOLDS = _INVALID, "more balance thresholds than a currency may have"
    DUPLICATE_THRESHOLD = _INVALID, "the same balance threshold is named twice"
    # --- provisioning --------------------------------------------------------------------
    USER_NOT_FOUND = _NOT_FOUND, "no such user in this company"
    LICENSE_NOT_FOUND = _NOT_FOUND, "no such license in this company"
    IMPORT_NOT_FOUND = _NOT_FOUND, "no such import in this company"
    EMAIL_TAKEN = _RULE, "another user of the company has this e-mail"
    NOT_A_USER_LICENSE = _INVALID, "the type is in the catalog but is not a user license"
    NOT_A_BASE_LICENSE = _INVALID, "the type is in the catalog but is not a base license"
    NOT_AN_ADDON = _INVALID, "the type is in the catalog but is not an add-on of base licenses"
    NOT_A_PORTAL_LICENSE = _RULE, "the type is not a reseller-portal base license"
    NOT_PHONE_SYSTEM = _RULE, "extensions and numbers exist on Phone System licenses only"
    USER_ALREADY_HAS_LICENSE = _RULE, "the user already has a license of the type"
    USER_IN_OTHER_OFFICE = _RULE, "the user belongs to another office"
    ADDON_ALREADY_ATTACHED = _RULE, "the base license already has the add-on"
    ADDON_NOT_ATTACHED = _RULE, "the base license has no such add-on"
    DUPLICATE_ADDON = _INVALID, "the same add-on is named twice"
    LICENSE_IN_USE = _RULE, "the license is in use: unassign it first"
    EXT_KEY_TAKEN = _RULE, "another license of the company has this extension"
    NUMBER_TAKEN = _RULE, "another license of the company has this number"
    MALFORMED_EXT_KEY = _INVALID, "the extension key is empty, too long or has control characters"
    MALFORMED_NUMBER = _INVALID, "the number is not a phone number"
    IMPORT_ID_REUSED = _INVALID, "the import id was already used for another file"
    IMPORT_HAS_ERRORS = _INVALID, "the file has errors: fix them and import again"
    TOO_MANY_RETRIES = _ABORTED, "the operation kept losing races; retry later"
    OPERATION_UNFINISHED = _DOWN, "the operation is under way: retry with the same request_id"
    OPERATION_IN_PROGRESS = _ABORTED, "another attempt of the request is running: retry shortly"
