"""The handlers' Powertools Logger also formats the records of the library code it calls.

`tidings_core` (and the transcoder) log with `logging.getLogger(__name__)`. Without this, their
records go to the root logger: plain text, their `extra` keys dropped, and INFO lost under
Lambda's default level. Each handler calls `route_package_logs(logger)` once at import, after
creating its module-level Logger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

PACKAGES = ("tidings_core",)


def route_package_logs(logger: Logger, packages: Iterable[str] = PACKAGES) -> None:
    """Give the top-level loggers of `packages` the handler's JSON handler and level."""
    names = set(packages)
    for name in names:
        logging.getLogger(name)  # registered now, even before any module of it logs
    copy_config_to_registered_loggers(source_logger=logger, include=names)
