"""What can go wrong, in words a user can act on, and how a run is asked to stop. Every layer raises and catches
these; this module depends on nothing, so any module may import it.

The CLI prints an NSTError as one line and exits with its `exit_code` (a traceback only behind --debug).
"""
from __future__ import annotations


class NSTError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(NSTError):
    """A bad setting or argument: a usage error (exit code 2)."""

    exit_code = 2


class MediaError(NSTError):
    """Unreadable input or a failed encode."""


class WeightsError(NSTError):
    """Missing or unusable VGG19 weights."""


class NonFiniteLoss(NSTError):
    """The loss became NaN or infinite (a step too large, or bf16 overflow)."""


class WorkDirError(NSTError):
    """A work directory that cannot be used (another version's, unwritable, damaged)."""


class WorkDirBusy(ConfigError):
    """A live run holds the work directory: refused before any work (exit 2)."""


class Interrupted(NSTError):
    """A stop asked for by SIGINT/SIGTERM, after the finished frames were saved."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopFlag:
    """Set by a signal handler; the loop stops between frames."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        self.signum = signum


def failure(error: BaseException) -> tuple[str, str]:
    """(state, message) of a job or unit that raised `error`: stopped by a signal, or failed with its one line
    (any other exception named by its type)."""
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return "stopped", str(error)
    if isinstance(error, NSTError):
        return "failed", str(error)
    return "failed", f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
