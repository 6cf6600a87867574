"""Errors meant for a person: the config key, the bad value and the fix."""

from __future__ import annotations

#: What an interrupted command prints last (exit code 130).
INTERRUPTED = "interrupted: finished trials are kept; run the same command to resume"


class UserError(Exception):
    """Bad input the person must fix; the CLI prints it as one line and exits with 2.

    Args:
        key: Dotted config key (``search.params.lr.low``) or the name of the input.
        value: The value that was given.
        fix: What to do instead, in a few words.
    """

    def __init__(self, key: str, value: object, fix: str) -> None:
        self.key, self.value, self.fix = key, value, fix
        super().__init__(f"{key}={value!r}: {fix}")


def as_user_error(exc: Exception) -> UserError | None:
    """The :class:`UserError` equivalent of a module's own config error, if it is one."""
    if isinstance(exc, UserError):
        return exc
    if all(hasattr(exc, name) for name in ("key", "value", "fix")) and isinstance(exc, ValueError):
        return UserError(exc.key, exc.value, exc.fix)  # type: ignore[attr-defined]
    return None


class StudyStopped(Exception):
    """A study stopped by faults the person must look at: trial failures in a row, or a
    storage that stayed away. Finished trials are kept; the CLI prints why and exits with 3.
    """
