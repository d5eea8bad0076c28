"""bench/cpu_accounting.py: CPU seconds by process role, on this machine's real /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.cpu_accounting import ProcessTree, Snapshot, descendants, per_delivery_ms, spent


def test_a_child_burning_cpu_is_counted_under_its_role_and_a_named_pid_under_its_label() -> None:
    burn = "import sys\nsys.stdin.readline()\nsum(range(20_000_000))\nprint('done', flush=True)\n"
    burn += "sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        tree = ProcessTree(os.getpid(), {"elsewhere": os.getpid()}, root_label="bench")
        assert child.pid in descendants(os.getpid())
        before = tree.snapshot()
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"done\n"
        after = tree.snapshot()
    finally:
        child.kill()
        child.wait()
    assert before.roles[child.pid] == "other"  # neither the root, a worker nor the AWS process
    assert before.roles[os.getpid()] == "elsewhere"  # a named pid keeps its label
    assert spent(before, after)["other"] > 0  # 20 million additions: many clock ticks


def test_spent_subtracts_per_process_and_sums_by_role() -> None:
    before = Snapshot({1: 1.0, 2: 2.0, 3: 5.0}, {1: "stack", 2: "worker f", 3: "worker f"})
    after = Snapshot({1: 1.5, 2: 2.25, 3: 5.25, 4: 9.0}, {1: "stack", 2: "worker f", 3: "worker f", 4: "new"})
    assert spent(before, after) == {"stack": 0.5, "worker f": 0.5}


def test_per_delivery_ms_sums_rounds_before_dividing() -> None:
    rounds = [({"stack": 0.2, "poster": 0.1}, 1000), ({"stack": 0.4}, 1000)]
    assert per_delivery_ms(rounds) == {"poster": 0.05, "stack": 0.3, "total": 0.35}
    assert per_delivery_ms([({"stack": 1.0}, 0)]) == {}
