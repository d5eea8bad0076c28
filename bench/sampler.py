"""A wall-clock sampling profiler for the bench's child processes (`BENCH_SAMPLE=<file>`).

Every few milliseconds a daemon thread reads every other thread's stack (`sys._current_frames`)
and counts, per frame, the samples it appears in (inclusive) and the samples where it is the
innermost frame not waiting (exclusive: frames in select, socket reads, lock waits and sleeps
are waits). The GIL is shared, so this shows where one interpreter's time goes across its
threads. Hand-written because py-spy and similar tools are not installed here; bench only.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
from pathlib import Path
from types import FrameType

_WAITS = frozenset(
    {
        "select",
        "poll",
        "wait",
        "acquire",
        "sleep",
        "recv",
        "recv_into",
        "accept",
        "readinto",
        "_recv_into",
        "read",
        "get",
        "_worker",
        "run_forever",
        "_run_once",
        "serve_forever",
        "readline",
    }
)


class Sampler:
    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.samples = 0
        self.busy = 0
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.exclusive: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval_s):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self._count(frame)

    @staticmethod
    def _name(frame: FrameType) -> str:
        code = frame.f_code
        return f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_name}"

    def _count(self, frame: FrameType | None) -> None:
        stack: list[FrameType] = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        if not stack or stack[0].f_code.co_name in _WAITS:
            return
        self.busy += 1
        self.exclusive[self._name(stack[0])] += 1
        for name in {self._name(f) for f in stack}:
            self.inclusive[name] += 1

    def dump(self, path: Path, top: int = 80) -> None:
        self._stop.set()
        report = {
            "samples": self.samples,
            "busy_thread_samples": self.busy,
            "inclusive": self.inclusive.most_common(top),
            "exclusive": self.exclusive.most_common(top),
        }
        path.write_text(json.dumps(report, indent=1))


def sample_if_asked(environ: dict[str, str]) -> Sampler | None:
    path = environ.get("BENCH_SAMPLE")
    return Sampler().start() if path else None


__all__ = ["Sampler", "sample_if_asked"]
