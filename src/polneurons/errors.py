"""User-facing errors: one line naming the problem and the fix, never a bare traceback."""

from __future__ import annotations

import contextlib
import logging
import sys


class PolneuronsError(Exception):
    """A problem the user can fix; its message is one line: what is wrong, then how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}" + (f" -- fix: {fix}" if fix else ""))


class ConfigError(PolneuronsError):
    """The configuration is invalid."""


class DataError(PolneuronsError):
    """Input data are missing, corrupt or malformed."""


class IntegrityError(DataError):
    """A file on disk does not match its recorded checksum or shape (truncated or altered)."""


class ModelError(PolneuronsError):
    """A model cannot be loaded or is not supported."""


class EnvironmentProblem(PolneuronsError):
    """The environment lacks something (network, API key, GPU)."""


@contextlib.contextmanager
def user_errors(log: logging.Logger | None = None):
    """Turn a PolneuronsError into one line on stderr and exit status 1 (for rule scripts)."""
    try:
        yield
    except PolneuronsError as exc:
        line = f"polneurons error: {exc}"
        if log is not None:
            log.error(line)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
