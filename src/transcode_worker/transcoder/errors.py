"""Failures a job can end with: each carries the `error.code` users see and whether a retry may help.

Step Functions matches on the exception class name (`errorType`), so each code is its own class.
"""

from __future__ import annotations


class TranscodeError(RuntimeError):
    code = "transcode_failed"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyInput(TranscodeError):
    code = "empty_input"


class CorruptInput(TranscodeError):
    code = "corrupt_input"


class UnsupportedInput(TranscodeError):
    code = "unsupported_input"


class UploadMismatch(TranscodeError):
    """The stored object is not the upload the job declared (its size differs)."""

    code = "upload_mismatch"


class FfmpegFailed(TranscodeError):
    """ffmpeg exited non-zero on an input that probed fine: possibly transient (memory, disk)."""

    code = "ffmpeg_failed"
    retryable = True


class WorkerLost(TranscodeError):
    """The encoder process was killed (signal, timeout, out of memory) before it finished."""

    code = "worker_lost"
    retryable = True


class VerificationFailed(TranscodeError):
    """The output does not match the input (frames, duration or audio): never reported as completed."""

    code = "verification_failed"
    retryable = True


class InternalError(TranscodeError):
    """An unexpected failure in the worker itself (a bug or the environment); the type is kept."""

    code = "internal_error"
    retryable = True

    @classmethod
    def wrap(cls, exc: BaseException) -> InternalError:
        return cls(f"internal error ({type(exc).__name__})")


ERRORS_BY_NAME: dict[str, type[TranscodeError]] = {
    cls.__name__: cls
    for cls in (
        TranscodeError,
        EmptyInput,
        CorruptInput,
        UnsupportedInput,
        UploadMismatch,
        FfmpegFailed,
        WorkerLost,
        VerificationFailed,
        InternalError,
    )
}
