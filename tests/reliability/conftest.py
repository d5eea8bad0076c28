"""Stacks for the reliability tests: `tidings dev` subprocesses with fault injection enabled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_harness import ROOT, RunningStack, start_stack, stop_stack

from tidings.local.faults import ENVIRONMENT_VARIABLE


def start_fault_stack(tmp_path: Path, *extra: str) -> RunningStack:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT_VARIABLE, "1")
        return start_stack(ROOT / "template.yaml", tmp_path, *extra)


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One stack for the load and fault tests (each uses its own users and jobs, and switches its
    faults off again), faults switchable at run time through /_tidings/faults."""
    stack = start_fault_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield stack
    finally:
        assert stop_stack(stack) == 0, stack.log_text()[-4000:]
