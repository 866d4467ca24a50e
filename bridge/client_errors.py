"""What bridge.client raises: errors a user can act on, each with a hint and a stable code."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Something the user can act on: `message` says what, `hint` what to do, `code` is stable."""

    def __init__(self, message: str, hint: str = "", code: str = "client_error"):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class EngineUnavailable(ClientError):
    """No engine runs and none could be started, or it stopped answering."""


class Refused(EngineUnavailable):
    """The engine refused this client at the handshake (a key not, or no longer, allowed)."""


class JobFailed(ClientError):
    """The engine answered with an error (a job's or a request's)."""

    def __init__(self, content: dict[str, Any]):
        super().__init__(
            str(content.get("message", "unknown error")),
            str(content.get("hint", "")),
            str(content.get("code", "engine_error")),
        )
        self.job_id = content.get("job_id")
