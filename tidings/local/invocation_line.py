"""What the terminal says about one invocation: pure, so the wording is tested by feeding values.

An invocation is an error when the handler raised, and also when it answered with a status of
400 or more (a handler that caught an exception and returned 500 failed its caller, whatever
the runtime thinks). The handler's printed output is shown collapsed: its first line and how
many more there are (the console shows all of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidings.local.model import Invocation

SUMMARY_WIDTH = 100


@dataclass(frozen=True)
class Outcome:
    failed: bool
    text: str  # "ok" | "error ValueError: ..." | "error status 500"
    status_code: int | None = None


def status_code(result: Any) -> int | None:
    """The HTTP status a proxy-style result answers with (`{"statusCode": 500, ...}`), if any."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return None
    value = result["statusCode"]
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def outcome(invocation: Invocation) -> Outcome:
    if not invocation.ok:
        return Outcome(True, f"error {invocation.error_type}: {invocation.error_message}")
    status = status_code(invocation.result)
    if status is not None and status >= 400:
        return Outcome(True, f"error status {status}", status)
    return Outcome(False, "ok", status)


def output_summary(logs: str, width: int = SUMMARY_WIDTH) -> str:
    """The first printed line, cut to `width`, and how many more lines there are; '' when silent."""
    lines = [line for line in logs.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0].strip()
    if len(first) > width:
        first = first[: width - 1] + "…"
    more = len(lines) - 1
    return f"{first} (+{more} line{'s' if more > 1 else ''})" if more else first


def text_line(
    invocation: Invocation,
    function_id: str,
    source: str,
    started: str,
    *,
    width: int = SUMMARY_WIDTH,
    denied: Sequence[str] = (),
) -> str:
    """One terminal line (no newline): time, function, trigger, duration, cold/warm, outcome, the
    calls IAM refused during it, output."""
    temperature = "cold" if invocation.cold else "warm"
    line = (
        f"{started}  {function_id:<28} {source or '-':<24} {invocation.duration_ms:8.1f} ms  "
        f"{temperature}  {outcome(invocation).text}"
    )
    if denied:
        line += " — " + "; ".join(denied)
    summary = output_summary(invocation.logs, width)
    return f"{line}  | {summary}" if summary else line
