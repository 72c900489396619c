"""Fuzzing one RPC: N requests, each answered by an allowed status, and none rejected
after writing anything; what went wrong, deduplicated, with what to blame."""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tests.fuzz.cases import Case, CaseMaker
from tests.fuzz.corpus import Corpus
from tests.fuzz.rpcs import Outcome, Rpc, call
from tests.fuzz.tables import Snapshot, TableWatch

S = grpc.StatusCode
# What a caller's request may be answered with: success, or a precise refusal.
ALLOWED = frozenset({
    S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.FAILED_PRECONDITION, S.ALREADY_EXISTS,
    S.ABORTED, S.RESOURCE_EXHAUSTED, S.OUT_OF_RANGE,
})  # fmt: skip
TIMEOUT_SECONDS = 30
_CODE_BY_NUMBER = {code.value[0]: code for code in S}
_VARYING = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|\d+|'[^']*'|\"[^\"]*\"")


@dataclass
class Finding:
    problem: str  # the status (and ErrorInfo reason), or "rejected but wrote rows"
    message: str
    case: Case
    count: int = 1

    @property
    def group(self) -> tuple[str, str]:
        """The problem, whatever the ids and numbers in its message."""
        return self.problem, _VARYING.sub("…", self.message)[:160]

    @property
    def key(self) -> tuple[object, ...]:
        return (*self.group, self.case.blame)


def report(findings: list[Finding]) -> list[str]:
    """One entry per problem, then each field and kind of value that caused it, with how
    often and the first request that did."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.group, []).append(finding)
    lines = []
    for (problem, _), members in groups.items():
        message = members[0].message
        message = message if len(message) < 300 else message[:300] + "..."
        lines.append(f"  {problem} {message!r}")
        for finding in members:
            case = finding.case
            lines.append(f"    - {case.attribution}: {finding.count}x, first #{case.number}")
            lines.append(f"        {case.show()}")
    return lines


def embedded_statuses(message: Message) -> Iterator[tuple[grpc.StatusCode, str, str]]:
    """Statuses carried inside an answer (the per-record results of a batch): messages
    shaped like google.rpc.Status, an integer `code` and a string `message`."""
    fields = message.DESCRIPTOR.fields_by_name
    code, text = fields.get("code"), fields.get("message")
    shaped = code is not None and code.cpp_type == FieldDescriptor.CPPTYPE_INT32
    shaped = shaped and text is not None and text.type == FieldDescriptor.TYPE_STRING
    if shaped and getattr(message, "code", 0):
        number, reason = getattr(message, "code", 0), getattr(message, "reason", "")
        yield _CODE_BY_NUMBER.get(number, S.UNKNOWN), reason, getattr(message, "message", "")
    for inner, value in message.ListFields():
        if inner.message_type is None or inner.message_type.GetOptions().map_entry:
            continue
        for item in value if inner.is_repeated else [value]:
            yield from embedded_statuses(item)


@dataclass
class Campaign:
    rpc: Rpc
    channel: grpc.aio.Channel
    tables: TableWatch
    corpus: Corpus
    seed: int
    examples: int
    other_types: list[Descriptor]
    findings: dict[tuple[object, ...], Finding] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    _last: Snapshot | None = None
    # Whether a successful call (here, or before this campaign) may have left work running
    # in the background (an import) since the database was last seen quiet.
    _busy: bool = True

    async def run(self) -> list[Finding]:
        corpus = copy.deepcopy(self.corpus)  # what this RPC's answers teach stays here
        rng = random.Random(f"{self.seed}/{self.rpc.path}")
        maker = CaseMaker(self.rpc.method.input_type, corpus, rng, self.other_types)
        self._last = await self.tables.snapshot()
        for number in range(self.examples):
            case = maker.make(number)
            outcome = await self.send(case)
            self.outcomes[outcome.label] += 1
            for response in outcome.responses:
                corpus.learn(response)
                for code, reason, message in embedded_statuses(response):
                    if code not in ALLOWED:
                        self.found(
                            f"OK, but a result inside is {code.name} {reason}", message, case
                        )
            if outcome.code not in ALLOWED:
                case, outcome = await self.narrow(maker, case, outcome)
                self.found(f"{outcome.code.name} {outcome.reason}".strip(), outcome.message, case)
        return list(self.findings.values())

    async def send(self, case: Case) -> Outcome:
        """Calls the RPC; a rejected call must leave every table as it was."""
        outcome = await call(self.channel, self.rpc, [case.payload], TIMEOUT_SECONDS)
        assert self._last is not None
        self._last, changes = await self.tables.changes_since(self._last)
        if outcome.code == S.OK or not changes:
            self._busy = self._busy or bool(changes)
            return outcome
        if not self._busy:
            self.found("rejected but wrote rows", f"{outcome.label}: {'; '.join(changes)}", case)
            return outcome
        # Work an earlier successful call left in the background may have written this:
        # let it end, then ask again.
        quiet = await self.tables.settled()
        self._busy = False
        again = await call(self.channel, self.rpc, [case.payload], TIMEOUT_SECONDS)
        self._last, changes = await self.tables.changes_since(quiet)
        if again.code != S.OK and changes:
            self.found("rejected but wrote rows", f"{again.label}: {'; '.join(changes)}", case)
        self._busy = again.code == S.OK and bool(changes)
        return outcome

    async def narrow(self, maker: CaseMaker, case: Case, outcome: Outcome) -> tuple[Case, Outcome]:
        """For a request with several hostile fields, the one field that alone gets the same
        answer, if there is one."""
        if len(case.mutations) < 2 or case.wire:
            return case, outcome
        for mutation in case.mutations[:12]:
            single = maker.with_mutations(case, [mutation])
            again = await self.send(single)
            if (again.code, again.reason) == (outcome.code, outcome.reason):
                return single, again
        return case, outcome

    def found(self, problem: str, message: str, case: Case) -> None:
        finding = Finding(problem, message, case)
        if finding.key in self.findings:
            self.findings[finding.key].count += 1
        else:
            self.findings[finding.key] = finding
