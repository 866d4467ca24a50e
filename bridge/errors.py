"""Errors a user can act on. Each carries the process exit code and a hint that names the fix.

Everything raised past the edge of the engine (CLI, bridge) is one of these; anything else is a bug.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: `message` says what is wrong, `hint` what to do about it."""

    exit_code = 1
    code = "engine_error"  # stable identifier, used by the bridge protocol

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(EngineError):
    """Bad input: an unreadable image, an invalid parameter, a mask that does not fit."""

    exit_code = 2
    code = "bad_input"


class WeightsMissing(EngineError):
    """Pretrained model weights (CLIP, U2-Net) are neither cached nor downloadable."""

    exit_code = 3
    code = "weights_missing"


class DeviceError(EngineError):
    """The requested compute device does not exist or ran out of memory."""

    exit_code = 4
    code = "device_error"


class OutputError(EngineError):
    """The result cannot be written where the user asked (disk full, no permission)."""

    exit_code = 5
    code = "output_error"


class Cancelled(EngineError):
    """A job was cancelled by its owner."""

    exit_code = 130
    code = "cancelled"


def exit_code_for(code: str) -> int:
    """The exit code of the error class with this `code` (an engine's error reply names only the
    code): a job that fails over the bridge exits as it would have run locally."""
    classes: list[type[EngineError]] = [InputError, WeightsMissing, DeviceError, OutputError, Cancelled]
    return next((cls.exit_code for cls in classes if cls.code == code), EngineError.exit_code)
