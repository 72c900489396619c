"""CPU accounting from /proc: how the machine's CPU was shared during a load run.

The generator's CPU share is its CPU time divided by the CPU time the whole machine was
busy over the same interval; a share near or above 1/cores means the generator used a
whole core and may have been the bottleneck.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the machine has spent not idle since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICK


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command, CPU seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(rest[1]), command, (int(rest[11]) + int(rest[12])) / _TICK


def _all_processes() -> dict[int, tuple[int, str, float]]:
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree_cpu_s(root: int, table: dict[int, tuple[int, str, float]]) -> float:
    """CPU seconds of a process and its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            total += table[pid][2]
        pending.extend(children.get(pid, ()))
    return total


def postgres_cpu_s(table: dict[int, tuple[int, str, float]]) -> float:
    """CPU seconds of live PostgreSQL processes (backends that exit are not counted)."""
    return sum(cpu for _, command, cpu in table.values() if command.startswith("postgres"))


def children_cpu_s() -> float:
    """CPU seconds of this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuReport:
    """CPU use over one load run, in CPU seconds."""

    wall_s: float
    cores: int
    machine_busy_s: float
    generator_s: float
    server_s: float | None
    postgres_s: float

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


class CpuMeter:
    """Samples the machine, a server process tree, PostgreSQL and finished children."""

    def __init__(self, server_pid: int | None) -> None:
        self._server_pid = server_pid
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float | None, float]:
        table = _all_processes()
        server = tree_cpu_s(self._server_pid, table) if self._server_pid else None
        return (
            time.monotonic(),
            machine_busy_s(),
            children_cpu_s(),
            server,
            postgres_cpu_s(table),
        )

    def stop(self) -> CpuReport:
        """The CPU used since the meter was made; the generator must have been waited for."""
        end = self._sample()
        start = self._start
        server = end[3] - start[3] if end[3] is not None and start[3] is not None else None
        return CpuReport(
            wall_s=end[0] - start[0],
            cores=os.cpu_count() or 1,
            machine_busy_s=end[1] - start[1],
            generator_s=end[2] - start[2],
            server_s=server,
            postgres_s=max(0.0, end[4] - start[4]),
        )
