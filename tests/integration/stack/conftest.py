"""`tidings dev` as a real subprocess on free ports, as a user runs it (tests/stack_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_harness import ROOT, RunningStack, local_token, start_stack, stop_stack  # tests/stack_harness.py

__all__ = ["ECHO_TEMPLATE", "ROOT", "RunningStack", "local_token", "start_stack", "stop_stack"]

ECHO_TEMPLATE = Path(__file__).parent / "echo_app" / "template.yaml"


@pytest.fixture(scope="module")
def tidings_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(ROOT / "template.yaml", tmp_path_factory.mktemp("tidings"))
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(ECHO_TEMPLATE, tmp_path_factory.mktemp("echo"))
    yield stack
    stop_stack(stack)
