"""The fuzz suites reuse the handler fixtures of tests/functional (moto tables, a fake management
API that records posts) so that a property runs in milliseconds per example."""

from __future__ import annotations

from functional.conftest import aws, handlers, management

__all__ = ["aws", "handlers", "management"]
