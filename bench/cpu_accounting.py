"""CPU time by process during a benchmark round: who spends the machine's cores on a delivery.

The machine is shared and has 2 cores, so a fan-out's throughput is bounded by the CPU all its
processes spend per delivery, not by one of them. `ProcessTree` snapshots user + system time of
a process and all its descendants (Linux /proc: the stack, its AWS services process, each
function worker) plus any other pids named (the bench's own clients, a poster), each labelled by
its role; `spent` is the difference of two snapshots. A process that ends between two snapshots
is not counted (the stack's workers live as long as the stack).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system seconds of the process's own threads), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _environment(pid: int, name: str) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """`root` and every process below it (by parent pid), as /proc shows them now."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def role_of(pid: int, root: int, root_label: str = "stack") -> str:
    """`root_label` for the root, `aws services` (the stack's embedded AWS process), a worker by
    its function's name (`AWS_LAMBDA_FUNCTION_NAME`), or `other` (a runtime's helper, a shell)."""
    if pid == root:
        return root_label
    function = _environment(pid, "AWS_LAMBDA_FUNCTION_NAME")
    if function:
        return f"worker {function}"
    if "child_main" in _command(pid):
        return "aws services"
    return "other"


@dataclass(frozen=True)
class Snapshot:
    seconds: Mapping[int, float]  # pid -> CPU seconds so far
    roles: Mapping[int, str]


class ProcessTree:
    """CPU seconds by role of `root`'s tree and of the `named` pids (label -> pid)."""

    def __init__(
        self, root: int, named: Mapping[str, int] | None = None, *, root_label: str = "stack"
    ) -> None:
        self.root = root
        self.root_label = root_label
        self.named = dict(named or {})
        self._roles: dict[int, str] = {}

    def _role(self, pid: int) -> str:
        if pid not in self._roles:
            self._roles[pid] = role_of(pid, self.root, self.root_label)
        return self._roles[pid]

    def snapshot(self) -> Snapshot:
        seconds: dict[int, float] = {}
        roles: dict[int, str] = {}
        for pid in descendants(self.root):
            stat = _stat(pid)
            if stat is not None:
                seconds[pid] = stat[1]
                roles[pid] = self._role(pid)
        for label, pid in self.named.items():
            stat = _stat(pid)
            if stat is not None:
                seconds[pid] = stat[1]
                roles[pid] = label
        return Snapshot(seconds, roles)


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds by role between two snapshots (processes present in both)."""
    by_role: dict[str, float] = {}
    for pid, seconds in after.seconds.items():
        if pid in before.seconds:
            role = after.roles[pid]
            by_role[role] = by_role.get(role, 0.0) + seconds - before.seconds[pid]
    return by_role


def per_delivery_ms(rounds: Iterable[tuple[dict[str, float], int]]) -> dict[str, float]:
    """CPU ms per delivery by role, summed over rounds of (CPU seconds by role, deliveries), with
    `total` the sum of the roles."""
    seconds: dict[str, float] = {}
    deliveries = 0
    for by_role, delivered in rounds:
        deliveries += delivered
        for role, value in by_role.items():
            seconds[role] = seconds.get(role, 0.0) + value
    if deliveries <= 0:
        return {}
    out = {role: round(value * 1000 / deliveries, 3) for role, value in sorted(seconds.items())}
    out["total"] = round(sum(seconds.values()) * 1000 / deliveries, 3)
    return out
