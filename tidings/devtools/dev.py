"""`tidings dev`: the emulator (tidings/local/) with the console, fault injection and Tidings' own
add-ons. Each of Tidings' add-ons checks the template it is given, so `tidings dev --template
other.yaml` runs another app with only the generic parts."""

from __future__ import annotations

from tidings.devtools.console_views import TidingsConsoleView
from tidings.devtools.demo_job import DemoJob
from tidings.devtools.faults import POST_FILTERS
from tidings.devtools.tokens import TokenRoute
from tidings.local import stack
from tidings.local.addons import AddOn
from tidings.local.console import Console
from tidings.local.faults import FaultInjection


def add_ons(options: stack.DevOptions) -> list[AddOn]:
    chosen: list[AddOn] = [
        TokenRoute(),
        Console(views=[TidingsConsoleView()]),
        FaultInjection(post_filters=POST_FILTERS),
    ]
    if options.demo:
        chosen.append(DemoJob())
    return chosen


def main(argv: list[str] | None = None) -> int:
    return stack.main(argv, add_ons=add_ons)
