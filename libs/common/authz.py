"""Who the caller is and whether it may make this call: one set of checks, one policy.

- **Identity** comes from the caller's verified client certificate (`libs.common.tls`):
  none (a certificate without a SAN) is UNAUTHENTICATED.
- **Policy** (`policy.toml`, data, not code) says which identities may call which
  methods, and which must present a company-scoped token. Not allowed is
  PERMISSION_DENIED `CALLER_NOT_ALLOWED`.
- **Token** (`libs.common.tokens`): required by the policy and missing, or present and
  not valid, is UNAUTHENTICATED. A valid token limits the call to its companies: a
  request naming any other `company_id` is PERMISSION_DENIED `COMPANY_NOT_IN_SCOPE`,
  before the handler runs, so nothing of the other company is read. The token is kept
  for the call (`current_token`) so that peer calls carry it on (`libs.common.peer`).

The checks run where every handler is wrapped once at registration
(`libs.common.error_status.CallGuard`, see `Authorizer`): they see decoded requests, and
their refusals are domain errors mapped to statuses like any other.
"""

from __future__ import annotations

import contextvars
import fnmatch
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from libs.common import tls
from libs.common.error_status import status_of
from libs.common.errors import DomainError
from libs.common.reasons import Reason
from libs.common.tokens import Token, TokenVerifier, bearer, unauthenticated

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")
_DECISIONS_CACHED = 10_000

_token: contextvars.ContextVar[Token | None] = contextvars.ContextVar(
    "licensing_token", default=None
)


def current_token() -> Token | None:
    """The verified token of the call being served (None: the caller sent none)."""
    return _token.get()


@dataclass(frozen=True, slots=True)
class Rule:
    identities: tuple[str, ...]
    methods: tuple[str, ...]
    token_required: bool

    def names(self, identity: str) -> bool:
        return any(fnmatch.fnmatchcase(identity, pattern) for pattern in self.identities)

    def allows(self, method: str) -> bool:
        return any(fnmatch.fnmatchcase(method, pattern) for pattern in self.methods)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    token_required: bool


class Policy:
    """Identity → methods, from a TOML file (see `policy.toml`)."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._decisions: dict[tuple[str, str], Decision] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        document = tomllib.loads(Path(path or DEFAULT_POLICY).read_text())
        rules = []
        for index, entry in enumerate(document.get("caller", [])):
            identities, methods = entry.get("identities"), entry.get("methods")
            token = entry.get("token", "optional")
            if not _strings(identities) or not _strings(methods):
                raise ValueError(f"policy caller #{index + 1}: identities and methods are lists")
            if token not in ("optional", "required"):
                raise ValueError(f"policy caller #{index + 1}: token is optional or required")
            rules.append(Rule(tuple(identities), tuple(methods), token == "required"))
        return cls(rules)

    def decide(self, identity: str, method: str) -> Decision:
        """Whether `identity` may call `method` (package.Service/Method) and must send a
        token doing so."""
        key = (identity, method)
        decision = self._decisions.get(key)
        if decision is None:
            matching = [rule for rule in self.rules if rule.names(identity)]
            decision = Decision(
                allowed=any(rule.allows(method) for rule in matching),
                token_required=any(rule.token_required for rule in matching),
            )
            if len(self._decisions) >= _DECISIONS_CACHED:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision


def _strings(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def method_name(full: str) -> str:
    """ "/package.Service/Method" as the policy names it: "package.Service/Method"."""
    return full.removeprefix("/")


# --- company scope -------------------------------------------------------------------
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_paths: dict[str, tuple[tuple[FieldDescriptor, ...], ...]] = {}


def _company_paths(descriptor: Any, depth: int = 3) -> tuple[tuple[FieldDescriptor, ...], ...]:
    """Every path of fields to a `company_id` in the message (nested up to `depth`)."""
    cached = _paths.get(descriptor.full_name)
    if cached is not None and depth == 3:
        return cached
    found: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        if field.name == "company_id" and field.type == FieldDescriptor.TYPE_STRING:
            found.append((field,))
        elif field.type == _MESSAGE and depth > 1 and field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue
            for rest in _company_paths(field.message_type, depth - 1):
                found.append((field, *rest))
    result = tuple(found)
    if depth == 3:
        _paths[descriptor.full_name] = result
    return result


def _values(message: Message, path: tuple[FieldDescriptor, ...]) -> Iterable[str]:
    field, rest = path[0], path[1:]
    if not rest:
        yield getattr(message, field.name)
        return
    if field.is_repeated:
        for item in getattr(message, field.name):
            yield from _values(item, rest)
    elif message.HasField(field.name):
        yield from _values(getattr(message, field.name), rest)


def company_ids(request: Any) -> tuple[bool, set[str]]:
    """(whether the request's type names a company at all, the non-empty company ids it
    holds, lower case)."""
    if not isinstance(request, Message):
        return False, set()
    paths = _company_paths(request.DESCRIPTOR)
    ids = {value.lower() for path in paths for value in _values(request, path) if value}
    return bool(paths), ids


def check_scope(token: Token, request: Any) -> None:
    """COMPANY_NOT_IN_SCOPE unless every company the request names is the token's."""
    scoped, ids = company_ids(request)
    if not scoped:
        return  # a request about no company (the license catalog): nothing to limit
    if not ids:
        raise Reason.COMPANY_NOT_IN_SCOPE.error("the request names no company of the token")
    if not ids <= token.company_ids:
        raise Reason.COMPANY_NOT_IN_SCOPE.error(
            "the request is for a company the caller's token does not cover"
        )


# --- the checks of one call ----------------------------------------------------------
class Authorizer:
    """The checks of one call, in order: identity, policy, token, company scope.

    `libs.common.error_status.CallGuard` runs them for every method of our services,
    where the request is decoded: `check` before decoding, `enter` (the company scope)
    on the decoded request. `guard_service` does the same for the services the server
    adds of its own (health, reflection), which are about no company.
    """

    def __init__(self, policy: Policy, tokens: TokenVerifier) -> None:
        self.policy = policy
        self.tokens = tokens

    def check(self, method: str, context: grpc.aio.ServicerContext) -> Token | None:
        """The caller's identity may call `method`, with a valid token if it must send
        one; returns that token (None: no token sent)."""
        identity = tls.peer_identity(context.auth_context())
        if identity is None:
            raise unauthenticated("the call carries no client certificate identity")
        decision = self.policy.decide(identity, method_name(method))
        if not decision.allowed:
            raise Reason.CALLER_NOT_ALLOWED.error(
                f"{identity} may not call {method_name(method)}", {"identity": identity}
            )
        raw = bearer(context.invocation_metadata())
        if raw is None:
            if decision.token_required:
                raise unauthenticated("this caller must send a company-scoped token")
            return None
        return self.tokens.verify(raw)

    @staticmethod
    def enter(token: Token, request: Any) -> contextvars.Token[Token | None]:
        """Holds the call to the token's companies (COMPANY_NOT_IN_SCOPE, before the
        handler runs) and keeps the token for the peer calls it makes (`leave` ends
        that)."""
        check_scope(token, request)
        return _token.set(token)

    @staticmethod
    def leave(entered: contextvars.Token[Token | None]) -> None:
        _token.reset(entered)

    def guard_service(
        self, name: str, handlers: dict[str, grpc.RpcMethodHandler], domain: str
    ) -> dict[str, grpc.RpcMethodHandler]:
        """`handlers` of service `name`, each checked before it runs (for the services
        not wrapped by `CallGuard`: health and reflection)."""
        return {
            method: self._guarded(f"/{name}/{method}", handler, domain)
            for method, handler in handlers.items()
        }

    def _guarded(
        self, method: str, handler: grpc.RpcMethodHandler, domain: str
    ) -> grpc.RpcMethodHandler:
        check = self.check

        async def refuse(error: DomainError, context: grpc.aio.ServicerContext) -> None:
            status = status_of(error, domain)
            await context.abort(status.code, status.details, status.trailing_metadata)

        async def checked(context: grpc.aio.ServicerContext) -> None:
            try:
                check(method, context)
            except DomainError as error:
                await refuse(error, context)

        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        # A request or a request stream alike: the check needs only the context.
        def answering(behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            async def checked_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await checked(context)
                return await behaviour(request, context)

            return checked_call

        def streaming(behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
            async def checked_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await checked(context)
                async for item in behaviour(request, context):
                    yield item

            return checked_stream

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(answering(handler.unary_unary), **codecs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(answering(handler.stream_unary), **codecs)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codecs)
