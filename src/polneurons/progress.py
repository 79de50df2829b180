"""Progress bars for rule logs: throttled when the stream is not a terminal.

tqdm redraws every 0.1 s by default; written to a log file, each redraw is another line
ending in a carriage return, so a multi-hour fine-tuning would write megabytes of them.
"""

from __future__ import annotations

from typing import IO

from tqdm import tqdm

# Seconds between redraws of a bar whose stream is not a terminal (a rule's log file).
LOG_FILE_MININTERVAL_S = 60.0


def progress_bar(progress: IO | None, **kwargs) -> tqdm:
    """A tqdm bar on `progress` (None: no bar). On a stream that is not a terminal it redraws
    at most every LOG_FILE_MININTERVAL_S seconds (tqdm's mininterval/maxinterval), plus the
    first and the final state."""
    if progress is not None and not _is_terminal(progress):
        kwargs.setdefault("mininterval", LOG_FILE_MININTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_FILE_MININTERVAL_S * 5)
    return tqdm(file=progress, disable=progress is None, **kwargs)


def _is_terminal(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
