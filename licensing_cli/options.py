"""Options that many commands share, and the request ids of mutations."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import typer

Company = Annotated[
    str,
    typer.Option(
        "--company",
        envvar="LICENSING_COMPANY",
        help="The company (UUID) the command acts for.",
        show_envvar=True,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
RequestId = Annotated[
    str | None,
    typer.Option(
        "--request-id",
        help="Idempotency key of the mutation (default: a new UUID). Re-running with the "
        "same id and the same arguments has no second effect.",
    ),
]
CurrencyFilter = Annotated[str, typer.Option("--currency", help="Only this currency.")]
PageSize = Annotated[int, typer.Option("--page-size", min=1, max=1000, help="Items per page.")]
PageToken = Annotated[
    str, typer.Option("--page-token", help="Continue from a previous page's next_page_token.")
]
AllPages = Annotated[bool, typer.Option("--all", help="Follow next_page_token to the end.")]


@dataclass(frozen=True)
class Paging:
    """What a list command's --page-size, --page-token and --all ask for."""

    size: int = 100
    token: str = ""
    follow: bool = False


FIRST_PAGE = Paging()
EVERY_PAGE = Paging(follow=True)


def paged(command: Callable[..., None]) -> Callable[..., None]:
    """Gives a list command the paging options, in place of its `paging: Paging` parameter
    (declared `= FIRST_PAGE`), and hands them to it as one `Paging`."""
    signature = inspect.signature(command, eval_str=True)
    kind = signature.parameters["paging"].kind
    options = [
        inspect.Parameter("page_size", kind, default=FIRST_PAGE.size, annotation=PageSize),
        inspect.Parameter("page_token", kind, default=FIRST_PAGE.token, annotation=PageToken),
        inspect.Parameter("follow", kind, default=FIRST_PAGE.follow, annotation=AllPages),
    ]
    parameters: list[inspect.Parameter] = []
    for name, parameter in signature.parameters.items():
        parameters.extend(options if name == "paging" else [parameter])

    @functools.wraps(command)
    def with_paging(page_size: int, page_token: str, follow: bool, **given: object) -> None:
        command(paging=Paging(page_size, page_token, follow), **given)

    with_paging.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return with_paging


MAX_REQUEST_ID = 100  # the services accept 128; derived ids add a suffix


def request_id(given: str | None) -> str:
    """The request id of a mutation: the one given, or a fresh UUID."""
    if given is None:
        return str(uuid.uuid4())
    if not given or len(given) > MAX_REQUEST_ID:
        raise typer.BadParameter(f"1 to {MAX_REQUEST_ID} characters", param_hint="--request-id")
    return given


def derived(base: str, step: str) -> str:
    """The request id of one step of a command that makes several mutations."""
    return f"{base}:{step}"


def uuid_text(value: str, what: str) -> str:
    """Checks that `value` is a UUID, for a clear message before any call."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a UUID", param_hint=what) from None


def currency_code(value: str) -> str:
    """`usd` -> `USD`; the services say which codes they accept."""
    return value.strip().upper()
