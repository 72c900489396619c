"""CPU accounting from /proc: how the machine's CPU was shared during a load run.

Two views of one run:

- the whole run (`CpuMeter.stop` -> `CpuReport`): the generator's CPU share is its CPU
  time divided by the CPU time the whole machine was busy over the same interval; a share
  near or above 1/cores means the generator used a whole core and may have been the
  bottleneck;
- the measured window (`CallCpu`, from two `CpuSample`s): the CPU the service process and
  PostgreSQL spent per successful call, the figures that say where a call's time goes.

A process tree's CPU is the user + system time (/proc/<pid>/stat) of the process and of
its live descendants, plus what its children that ended spent (the root's cutime +
cstime): PostgreSQL is a postmaster with a backend per connection, and a backend that
exits during the run is still counted, through the postmaster that reaped it.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCpu:
    """One line of /proc/<pid>/stat, in CPU seconds."""

    ppid: int
    command: str
    own_s: float  # utime + stime
    reaped_children_s: float  # cutime + cstime: children that ended and were waited for


ProcessTable = dict[int, ProcessCpu]


def machine_busy_s() -> float:
    """CPU seconds the machine has spent not idle since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICK


def process_cpu(pid: int) -> ProcessCpu | None:
    """A process's parent, command and CPU seconds, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    return ProcessCpu(
        ppid=int(rest[1]),
        command=command,
        own_s=(int(rest[11]) + int(rest[12])) / _TICK,
        reaped_children_s=(int(rest[13]) + int(rest[14])) / _TICK,
    )


def all_processes() -> ProcessTable:
    table: ProcessTable = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = process_cpu(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree_cpu_s(root: int, table: ProcessTable) -> float | None:
    """CPU seconds of a process tree (see the module's docstring); None if the root is gone."""
    if root not in table:
        return None
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    total = table[root].reaped_children_s
    pending = [root]
    while pending:
        pid = pending.pop()
        total += table[pid].own_s
        pending.extend(children.get(pid, ()))
    return total


def children_cpu_s() -> float:
    """CPU seconds of this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSample:
    """The CPU counters at one instant."""

    at: float  # time.monotonic()
    machine_busy_s: float
    children_s: float  # this process's finished children (the generator, once waited for)
    server_s: float | None  # the server's process tree
    postgres_s: float | None  # the postmaster's process tree


def _delta(end: float | None, start: float | None) -> float | None:
    return max(0.0, end - start) if end is not None and start is not None else None


@dataclass(frozen=True)
class CpuReport:
    """CPU use over one whole load run, in CPU seconds."""

    wall_s: float
    cores: int
    machine_busy_s: float
    generator_s: float
    server_s: float | None
    postgres_s: float | None

    @property
    def generator_share(self) -> float | None:
        """The generator's part of the CPU the machine used."""
        return self.generator_s / self.machine_busy_s if self.machine_busy_s > 0 else None

    @property
    def generator_cores(self) -> float:
        """How many cores the generator kept busy on average."""
        return self.generator_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "wall_s": self.wall_s,
            "cores": self.cores,
            "machine_busy_s": self.machine_busy_s,
            "machine_utilisation": self.machine_busy_s / (self.wall_s * self.cores)
            if self.wall_s > 0
            else None,
            "generator_s": self.generator_s,
            "generator_share": self.generator_share,
            "generator_cores": self.generator_cores,
            "server_s": self.server_s,
            "postgres_s": self.postgres_s,
        }


@dataclass(frozen=True)
class CallCpu:
    """CPU of the service process and of PostgreSQL over the measured window, per call."""

    window_s: float
    calls: int  # successful calls completed inside the window
    service_s: float | None
    postgres_s: float | None

    @classmethod
    def between(cls, start: CpuSample, end: CpuSample, calls: int) -> CallCpu:
        return cls(
            window_s=end.at - start.at,
            calls=calls,
            service_s=_delta(end.server_s, start.server_s),
            postgres_s=_delta(end.postgres_s, start.postgres_s),
        )

    def _per_call_us(self, seconds: float | None) -> float | None:
        return seconds / self.calls * 1e6 if seconds is not None and self.calls > 0 else None

    @property
    def service_us_per_call(self) -> float | None:
        return self._per_call_us(self.service_s)

    @property
    def postgres_us_per_call(self) -> float | None:
        return self._per_call_us(self.postgres_s)

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "window_s": self.window_s,
            "calls": self.calls,
            "service_s": self.service_s,
            "postgres_s": self.postgres_s,
            "service_us_per_call": self.service_us_per_call,
            "postgres_us_per_call": self.postgres_us_per_call,
        }


class CpuMeter:
    """Samples the machine, a server's process tree, PostgreSQL's and finished children.

    `server_pid` and `postgres_pid` (the postmaster) are optional: without one, its CPU
    is reported as None (a database on another machine cannot be measured from here).
    """

    def __init__(self, server_pid: int | None, postgres_pid: int | None = None) -> None:
        self._server_pid = server_pid
        self._postgres_pid = postgres_pid
        self._start = self.sample()

    def sample(self) -> CpuSample:
        table = all_processes()
        return CpuSample(
            at=time.monotonic(),
            machine_busy_s=machine_busy_s(),
            children_s=children_cpu_s(),
            server_s=tree_cpu_s(self._server_pid, table) if self._server_pid else None,
            postgres_s=tree_cpu_s(self._postgres_pid, table) if self._postgres_pid else None,
        )

    def stop(self) -> CpuReport:
        """The CPU used since the meter was made; the generator must have been waited for."""
        end = self.sample()
        start = self._start
        return CpuReport(
            wall_s=end.at - start.at,
            cores=os.cpu_count() or 1,
            machine_busy_s=end.machine_busy_s - start.machine_busy_s,
            generator_s=end.children_s - start.children_s,
            server_s=_delta(end.server_s, start.server_s),
            postgres_s=_delta(end.postgres_s, start.postgres_s),
        )
