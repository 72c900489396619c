"""`python -m licensing_cli.demo` (what `make demo` does): a short story, end to end.

It starts the whole platform (four services, each its own process) on its own embedded
PostgreSQL in a temporary directory and on its own free ports, with a short grace period
(licensing_cli/demo_platform.py), then plays a story with the `licensing` command: every
step is a sentence, the exact command, and its output. It stops everything at the end,
on Ctrl-C, and on failure, and exits non-zero when a step did not do what the story
expects.

Steps whose results the story needs later (ids, counts) run with `--json`; their JSON is
printed abridged (timestamps, the company id and empty strings left out). Views (pool,
balances, invoice) are printed as tables, and read once more with `--json` for the
checks; reads change nothing. `play` returns every step's JSON, so the e2e test
(`tests/e2e/test_demo_story.py`) runs the same story and asserts on it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from licensing_cli.demo_platform import Platform, PlatformFailed, launched, tail

DEFAULT_GRACE_SECONDS = 6.0
COMMAND_SECONDS = 120.0
NOISE = frozenset({"company_id", "create_time", "update_time", "request_id"})

# Prices per license type and cycle, in minor units: New York and San Francisco share a
# price book (USD, pooled); London pays in GBP.
USD_PRICES = {"connect": 2500, "phone_system": 1500, "device_ip_phone": 500}
GBP_PRICES = {"connect": 2000}


class StepFailed(Exception):
    """A step did not do what the story expects."""


# --- running the command ------------------------------------------------------------------


def licensing_command() -> list[str]:
    """The installed `licensing` next to this interpreter (or the same entry point)."""
    found = shutil.which("licensing", path=os.path.dirname(sys.executable))
    if found:
        return [found]
    return [sys.executable, "-c", "from licensing_cli.main import main; main()"]


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs `licensing` for the story; prints each step when `echo`."""

    env: dict[str, str]
    echo: bool = True
    cwd: Path | None = None  # where relative paths in commands (the CSV) are
    command: list[str] = field(default_factory=licensing_command)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSING_")}
        if self.echo and sys.stdout.isatty():
            env["FORCE_COLOR"] = "1"
            env["COLUMNS"] = str(max(shutil.get_terminal_size().columns, 100))
        else:
            env.setdefault("COLUMNS", "120")
        return {**env, **self.env}

    def _run(self, args: Sequence[str], live: bool = False) -> Result:
        if live and self.echo:
            sys.stdout.flush()
            done = subprocess.run(
                [*self.command, *args],
                env=self._env(),
                cwd=self.cwd,
                timeout=COMMAND_SECONDS,
                check=False,
            )
            return Result(list(args), done.returncode, "", "")
        captured = subprocess.run(
            [*self.command, *args],
            env=self._env(),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        return Result(list(args), captured.returncode, captured.stdout, captured.stderr)

    # What people see.

    def say(self, text: str) -> None:
        if self.echo:
            print(f"\n\033[1m▸ {text}\033[0m" if sys.stdout.isatty() else f"\n▸ {text}")

    def chapter(self, title: str) -> None:
        if self.echo:
            line = f"━━ {title} " + "━" * max(0, 72 - len(title))
            print(f"\n\n\033[1;36m{line}\033[0m" if sys.stdout.isatty() else f"\n\n{line}")

    def shell(self, line: str) -> None:
        if self.echo:
            print(f"\033[32m$ {line}\033[0m" if sys.stdout.isatty() else f"$ {line}", flush=True)

    def text(self, text: str) -> None:
        if self.echo:
            print(text.rstrip("\n"), flush=True)

    def _command(self, args: Sequence[str]) -> None:
        self.shell(shlex.join(["licensing", *args]))

    # The kinds of steps.

    def do(
        self,
        sentence: str,
        *args: str,
        keep: Callable[[Any], Any] | None = None,
        abridge: bool = True,
    ) -> Any:
        """A step whose JSON the story needs: runs with `--json`, prints it (abridged)."""
        self.say(sentence)
        full = [*args, "--json"]
        self._command(full)
        result = self._run(full)
        if result.code != 0:
            raise StepFailed(_failure(result))
        data = result.json()
        shown = keep(data) if keep else data
        shown = abridged(shown) if abridge else shown
        self.text(compact(shown))
        return data

    def show(self, sentence: str, *args: str) -> Any:
        """A view: the table for people; returns the same read as JSON (not printed)."""
        self.say(sentence)
        self._command(args)
        if self.echo:
            result = self._run(args)
            if result.code != 0:
                raise StepFailed(_failure(result))
            self.text(result.stdout)
        read = self._run([*args, "--json"])
        if read.code != 0:
            raise StepFailed(_failure(read))
        return read.json()

    def run(self, sentence: str, *args: str, live: bool = False) -> Result:
        """A step shown as the command prints it (a live progress bar when `live`)."""
        self.say(sentence)
        self._command(args)
        result = self._run(args, live=live)
        if result.code != 0:
            raise StepFailed(_failure(result))
        self.text(result.stdout)
        return result

    def fails(self, sentence: str, *args: str, reason: str) -> Result:
        """A step that must be refused with `reason`: shows the error."""
        self.say(sentence)
        self._command(args)
        result = self._run(args)
        self.text(result.stdout + result.stderr)
        if result.code == 0 or reason not in result.stderr:
            raise StepFailed(f"expected {reason}, got:\n{_failure(result)}")
        return result


def _failure(result: Result) -> str:
    return (
        f"`{shlex.join(['licensing', *result.args])}` exited with {result.code}\n"
        f"{result.stdout}{result.stderr}".rstrip()
    )


def abridged(value: Any) -> Any:
    """JSON without timestamps, the company id, request ids and empty strings."""
    if isinstance(value, dict):
        return {
            k: abridged(v)
            for k, v in value.items()
            if k not in NOISE and not k.endswith("_time") and v != ""
        }
    if isinstance(value, list):
        return [abridged(v) for v in value]
    return value


def compact(value: Any, indent: int = 0, width: int = 96) -> str:
    """JSON with small objects and lists on one line."""
    one = json.dumps(value, ensure_ascii=False)
    if len(one) + indent <= width or not isinstance(value, dict | list) or not value:
        return one
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {compact(v, indent + 2, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + compact(v, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(f"the story expected: {what}")


# --- the story ----------------------------------------------------------------------------


@dataclass
class Story:
    """What the steps returned (their JSON), by name, and the offices by city."""

    grace_seconds: float
    workdir: Path
    offices: dict[str, str] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    company: str = ""


def prices(book: Mapping[str, int]) -> list[str]:
    return [arg for code, amount in book.items() for arg in ("--price", f"{code}={amount}")]


def start_company(cli: Cli, story: Story) -> None:
    cli.chapter("1. A company with offices in two currencies")
    created = cli.do("A new company id.", "company", "new", abridge=False)
    story.company = created["company_id"]
    cli.say("Every command below acts for this company (the --company option's variable).")
    cli.shell(f"export LICENSING_COMPANY={story.company}")
    cli.env["LICENSING_COMPANY"] = story.company
    offices = [
        ("New York", "USD", USD_PRICES, "1000", ("--primary",)),
        ("San Francisco", "USD", USD_PRICES, "500", ()),
        ("London", "GBP", GBP_PRICES, "800", ()),
    ]
    for city, currency, book, allowance, extra in offices:
        made = cli.do(
            f"{city}: a {currency} office on a bundle plan, with {allowance} minor units of "
            "included usage credits per period.",
            "office",
            "create",
            "--currency",
            currency,
            "--name",
            city,
            *prices(book),
            "--allowance",
            allowance,
            *extra,
            keep=lambda d: {
                "office": d["office"],
                "plan": {
                    "plan_id": d["plan"]["plan_id"],
                    "display_name": d["plan"]["display_name"],
                    "prices": d["plan"]["prices"],
                },
                "account": {"allowance_minor": d["account"]["allowance_minor"]},
            },
        )
        story.offices[city] = made["office"]["office_id"]
        story.steps[f"office {city}"] = made
    cli.text("\n" + "\n".join(f"  {city}: {office}" for city, office in story.offices.items()))
    story.steps["company"] = cli.show(
        "The company: New York and San Francisco share identical USD prices.", "company", "show"
    )
    story.steps["plans"] = cli.show(
        "Its plans, by name, oldest first: each office's price book.", "plan", "list"
    )


def buy_and_staff(cli: Cli, story: Story) -> None:
    cli.chapter("2. Licenses bought, users created")
    ny, sf, london = (story.offices[c] for c in ("New York", "San Francisco", "London"))
    for city, office, quantity in (
        ("New York", ny, 3),
        ("San Francisco", sf, 1),
        ("London", london, 1),
    ):
        story.steps[f"purchase {city}"] = cli.do(
            f"{city} buys {quantity} connect license(s); pooling is off, so all are new.",
            "checkout",
            "purchase",
            office,
            "connect",
            str(quantity),
            keep=_purchase_summary,
        )
    people = [
        ("Ada Lovelace", ny, "ada@example.com"),
        ("Edsger Dijkstra", ny, ""),
        ("Barbara Liskov", ny, ""),
        ("Grace Hopper", sf, "grace@example.com"),
        ("Alan Turing", london, ""),
    ]
    for name, office, email in people:
        city = next(c for c, o in story.offices.items() if o == office)
        extra = ("--email", email) if email else ()
        made = cli.do(
            f"{name} joins {city}, on one of its own licenses.",
            "user",
            "create",
            office,
            name,
            *extra,
        )
        story.users[name] = made["user"]


def enable_pool(cli: Cli, story: Story) -> None:
    cli.chapter("3. The USD pool")
    enabled = cli.do(
        "Turn on the USD pool: one-way; New York and San Francisco take part. No license is "
        "spare, so nothing moves, and the price books agree.",
        "pool",
        "enable",
        "USD",
    )
    story.steps["pool enable"] = enabled
    expect(enabled["pool"]["enabled"], "the USD pool is enabled")
    expect(enabled["price_mismatches"] == [], "no price mismatch between the USD plans")


def seat_moves_after_grace(cli: Cli, story: Story) -> None:
    grace = f"{story.grace_seconds:g} s"
    cli.chapter(f"4. A seat moves from New York to San Francisco after {grace}")
    sf = story.offices["San Francisco"]
    first = cli.do(
        f"New York deletes Edsger Dijkstra; his license goes to the USD pool (returned_units "
        f"says where each unit went), in grace for {grace} (the demo's POOL_GRACE_SECONDS; 30 "
        "minutes by default) so that New York could take it back.",
        "user",
        "delete",
        story.users["Edsger Dijkstra"]["user_id"],
    )
    first_returned = time.monotonic()
    refused = cli.fails(
        "San Francisco hires Margaret Hamilton at once: refused, the seat is still in grace.",
        "user",
        "create",
        sf,
        "Margaret Hamilton",
        reason="NO_LICENSE_AVAILABLE",
    )
    story.steps["create refused"] = refused
    story.steps["quote in grace"] = cli.show(
        "A checkout now would buy a new license: 0 from pool.",
        "checkout",
        "quote",
        sf,
        "connect",
        "1",
    )
    in_time = time.monotonic() - first_returned < story.grace_seconds
    expect(in_time, f"the refusal before the grace period ended (try a longer one than {grace})")
    second = cli.do(
        "New York deletes Barbara Liskov too: a second seat in grace.",
        "user",
        "delete",
        story.users["Barbara Liskov"]["user_id"],
    )
    returned_at = time.monotonic()
    story.steps["returned"] = first["returned_unit_ids"] + second["returned_unit_ids"]
    story.steps["pool in grace"] = cli.show(
        "The pool holds both seats, neither claimable yet.", "pool", "show", "USD"
    )
    wait = max(0.0, story.grace_seconds + 1 - (time.monotonic() - returned_at))
    cli.say(f"Wait {wait:.0f} s for the grace period to end.")
    cli.shell(f"sleep {wait:.0f}")
    time.sleep(wait)
    margaret = cli.do(
        "San Francisco hires Margaret Hamilton again: she gets Edsger's seat from New York "
        "(oldest return first), free.",
        "user",
        "create",
        sf,
        "Margaret Hamilton",
    )
    story.users["Margaret Hamilton"] = margaret["user"]
    story.steps["margaret"] = margaret
    expect(
        margaret["user"]["license_unit_id"] in first["returned_unit_ids"],
        "Margaret takes Edsger's returned seat",
    )
    expect(margaret["license_source"] == "LICENSE_SOURCE_POOL", "her license came from the pool")


def checkout_from_pool(cli: Cli, story: Story) -> None:
    cli.chapter('5. A checkout with "X from pool"')
    sf = story.offices["San Francisco"]
    quote = cli.show(
        "San Francisco wants 2 more connect licenses: the quote takes the other returned "
        "seat from the pool and charges only 1 new one (prorated).",
        "checkout",
        "quote",
        sf,
        "connect",
        "2",
    )
    story.steps["quote"] = quote
    expect(quote["quote"]["from_pool"] == 1, "1 from pool in the quote")
    story.steps["purchase from pool"] = cli.do(
        "It buys them.", "checkout", "purchase", sf, "connect", "2", keep=_purchase_summary
    )
    for name, email in (("Katherine Johnson", "katherine@example.com"), ("Dorothy Vaughan", "")):
        extra = ("--email", email) if email else ()
        made = cli.do(
            f"{name} joins San Francisco on one of them.", "user", "create", sf, name, *extra
        )
        story.users[name] = made["user"]


def csv_import(cli: Cli, story: Story) -> None:
    cli.chapter("6. Phone System licenses from a CSV")
    sf = story.offices["San Francisco"]
    for code, quantity in (("phone_system", "3"), ("device_ip_phone", "2")):
        story.steps[f"purchase {code}"] = cli.do(
            f"San Francisco buys {quantity} {code} license(s) for the import.",
            "checkout",
            "purchase",
            sf,
            code,
            quantity,
            keep=_purchase_summary,
        )
    template = cli.run("The CSV template's columns.", "import", "template", "--header-only")
    header = next(csv.reader(io.StringIO(template.stdout)))
    expect(header[:3] == ["Ext Key", "Number", "User"], "the template starts with Ext Key")
    rows = [
        ("201", "+14155550101", "Grace Hopper", "device_ip_phone"),
        ("202", "+14155550102", "Margaret Hamilton", "device_ip_phone"),
        ("203", "+14155550103", "katherine@example.com", ""),
    ]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([*row, *[""] * (len(header) - len(row))])
    path = story.workdir / "sf-phones.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    cli.say("A small file with the template's columns: extension, number, user, add-ons.")
    cli.shell(f"cat {path.name}")
    cli.text(out.getvalue())
    story.steps["import check"] = cli.show(
        "Dry run: every row valid, the licenses it needs come from San Francisco's spares.",
        "import",
        "check",
        path.name,
        "--office",
        sf,
    )
    import_id = f"sf-phones-{story.company[:8]}"
    cli.run(
        "Apply it, all or nothing, with a progress bar.",
        "import",
        "apply",
        path.name,
        "--office",
        sf,
        "--import-id",
        import_id,
        live=True,
    )
    status = cli.show("The import, afterwards.", "import", "status", import_id)
    story.steps["import status"] = status
    expect(status["import_job"]["state"] == "IMPORT_STATE_SUCCEEDED", "the import succeeded")


def portal_one_by_one(cli: Cli, story: Story) -> None:
    cli.chapter("7. The portal, one license at a time")
    found = cli.show(
        "San Francisco's Phone System licenses, with their users, extensions and add-ons.",
        "license",
        "search",
        "--type",
        "phone_system",
    )
    by_extension = {h["ext_key"]: h["license_id"] for h in found["licenses"]}
    story.steps["licenses"] = found
    grace, katherine = by_extension["201"], by_extension["203"]
    story.steps["extension"] = cli.do(
        "Katherine Johnson moves to extension 204, with a new number.",
        "extension",
        "set",
        katherine,
        "--ext-key",
        "204",
        "--number",
        "+14155550104",
    )
    story.steps["addon removed"] = cli.do(
        "Grace Hopper gives up her IP phone: its unit goes back to the pool, San Francisco's "
        "own return in grace.",
        "addon",
        "remove",
        grace,
        "device_ip_phone",
    )
    story.steps["addon added"] = cli.do(
        "Katherine gets an IP phone: the same unit, taken back before anyone else may.",
        "addon",
        "add",
        katherine,
        "device_ip_phone",
    )
    story.steps["license"] = cli.show(
        "Her license now: subscription, user, extension, number, add-ons.",
        "license",
        "show",
        katherine,
    )


def pooled_credits(cli: Cli, story: Story) -> None:
    cli.chapter("8. Pooled usage credits")
    ny, sf, london = (story.offices[c] for c in ("New York", "San Francisco", "London"))
    story.steps["pooling"] = cli.do(
        "Turn on unified credit pooling for USD.", "usage", "pooling", "USD", "--on"
    )
    story.steps["grant"] = cli.do(
        "Grant $50.00 to the shared USD balance.",
        "usage",
        "grant",
        "5000",
        "--currency",
        "USD",
        "--note",
        "demo credits",
    )
    for key, sentence, office, amount, kind in (
        ("usage New York", "New York calls for $15.00: $10.00 allowance, then $5.00 shared.",
         ny, "1500", "calling"),
        ("usage San Francisco", "San Francisco messages for $20.00: $5.00 allowance, then "
         "$15.00 shared.", sf, "2000", "messaging"),
        ("usage London", "London calls for £3.00, within its allowance (GBP is not pooled).",
         london, "300", "calling"),
    ):  # fmt: skip
        story.steps[key] = cli.do(
            sentence, "usage", "record", office, amount, "--kind", kind, keep=_usage_summary
        )
    story.steps["balances"] = cli.show(
        "Balances: $50.00 - $5.00 - $15.00 = $30.00 left in the shared pool.", "usage", "balances"
    )
    story.steps["totals"] = cli.show(
        "Usage per office adds up to the company total of each currency.", "usage", "totals"
    )


def close_cycle(cli: Cli, story: Story) -> None:
    cli.chapter("9. The invoice bills every seat exactly once")
    closed = cli.do(
        "Close last month's billing period (the current one has not ended yet): one "
        "invoice from one pool snapshot.",
        "cycle",
        "close",
        keep=lambda d: {
            k: d["invoice"][k] for k in ("invoice_id", "period", "totals", "reconciliation")
        },
    )
    story.steps["close"] = closed
    invoice = closed["invoice"]
    story.steps["invoice"] = cli.show(
        "The invoice: units per office and type, this period's purchases, and the "
        "reconciliation line.",
        "cycle",
        "invoice",
        invoice["invoice_id"],
    )
    reconciliation = invoice["reconciliation"]
    expect(reconciliation["balanced"], "the invoice reconciles")
    expect(
        reconciliation["billed_units"] == reconciliation["live_units"],
        "units billed equal live units",
    )


def _purchase_summary(data: Any) -> Any:
    p = data["purchase"]
    keys = ("purchase_id", "license_type", "quantity", "restored", "from_pool", "new_units")
    return {
        "purchase": {
            **{k: p[k] for k in keys},
            "amount": p["amount"],
            "message": p["message"],
            "state": p["state"],
        }
    }


def _usage_summary(data: Any) -> Any:
    u = data["usage"]
    keys = ("usage_id", "office_id", "kind", "amount_minor", "currency", "split")
    return {"usage": {k: u[k] for k in keys}}


CHAPTERS: list[Callable[[Cli, Story], None]] = [
    start_company,
    buy_and_staff,
    enable_pool,
    seat_moves_after_grace,
    checkout_from_pool,
    csv_import,
    portal_one_by_one,
    pooled_credits,
    close_cycle,
]


def play(cli: Cli, workdir: Path, grace_seconds: float) -> Story:
    """Plays the story against the services in `cli.env`; returns what each step said."""
    story = Story(grace_seconds, workdir)
    cli.env.pop("LICENSING_COMPANY", None)
    cli.cwd = workdir  # the CSV is written and read here, under a short name
    for chapter in CHAPTERS:
        chapter(cli, story)
    return story


# --- make demo ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m licensing_cli.demo",
        description="Play a short story end to end with the licensing command, on a "
        "platform of its own (embedded database in a temporary directory, free ports).",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(os.environ.get("POOL_GRACE_SECONDS", DEFAULT_GRACE_SECONDS)),
        help="Grace period of returned licenses, seconds (POOL_GRACE_SECONDS; default 6).",
    )
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # both stop the platform, then the demo
        signal.signal(sig, _interrupt)
    cli = Cli({})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="licensing-demo-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        platform: Platform | None = None
        try:
            cli.chapter("0. The platform")
            cli.say(
                "Start the four services, each its own process, on an embedded PostgreSQL "
                f"in {workdir}, on free ports, with a {args.grace:g} s grace period for "
                "returned licenses (POOL_GRACE_SECONDS; 30 minutes by default)."
            )
            cli.shell(f"POOL_GRACE_SECONDS={args.grace:g} python -m services")
            with launched(workdir, args.grace) as platform:
                cli.text(
                    "\n".join(f"  {n} listening on {a}" for n, a in platform.addresses.items())
                )
                cli.say("The command finds them through these variables.")
                for key, value in platform.cli_env.items():
                    cli.shell(f"export {key}={value}")
                cli.env.update(platform.cli_env)
                cli.show("Every service answers health checks and reflection.", "services")
                play(cli, workdir, args.grace)
                cli.chapter("The end")
                cli.text(
                    f"The story took {time.monotonic() - started:.0f} s. "
                    "Stopping the platform and deleting its database."
                )
        except (StepFailed, PlatformFailed) as failure:
            print(f"\ndemo failed: {failure}", file=sys.stderr)
            if platform is not None:
                print(f"\nlast lines of the platform's log:\n{tail(platform.log)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ndemo interrupted; the platform is stopped.", file=sys.stderr)
            return 130
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
