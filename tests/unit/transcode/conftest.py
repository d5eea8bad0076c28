"""Lambda code roots on sys.path, as Lambda has them (`transcoder` and `upload_rules` are top level)."""

from __future__ import annotations

import sys

from testkit import SRC  # tests/testkit.py

for code_root in (SRC / "transcode_worker", SRC / "uploads"):
    if str(code_root) not in sys.path:
        sys.path.insert(0, str(code_root))
