"""What every rule script shares: logging to the rule's log, threads, seeds, one-line errors."""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from dataclasses import dataclass
from typing import TextIO

from polneurons.errors import PolneuronsError, user_errors
from polneurons.gpus import pinned_gpus


@dataclass
class RuleContext:
    log: logging.Logger
    progress: TextIO  # tqdm writes here (the rule's log file)

    def warn(self, message: str) -> None:
        """A warning in the rule's log and on stderr, which Snakemake shows in its own output."""
        self.log.warning(message)
        print(f"polneurons warning: {message}", file=sys.stderr, flush=True)


def put_first_on_job_path(src: str) -> None:
    """Put `src` (the checkout's src/) first on the PYTHONPATH that every job of this snakemake
    process inherits, so that each rule script imports this checkout's polneurons, not an
    installed copy (the Snakefile calls it; docs/design.md, "Layout")."""
    import os

    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *others])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def unexpected_error_line(smk, exc: BaseException, log_path: str | None) -> str:
    """The one line a failure that is not a PolneuronsError leaves in Snakemake's output: the
    rule, the run (its wildcards), what was raised, and the log holding the traceback."""
    run = "/".join(str(value) for value in dict(smk.wildcards.items()).values()) or "-"
    what = (str(exc).strip().splitlines() or [""])[0][:200]
    where = f"the traceback is in {log_path}" if log_path else "the traceback is above"
    return (
        f"polneurons error: rule {smk.rule} failed for {run} with an unexpected "
        f"{type(exc).__name__}{': ' + what if what else ''} -- fix: {where}; "
        "please report it with that log"
    )


@contextlib.contextmanager
def rule_context(smk, seed: int | None = None):
    """Log to the rule's log file, pin the job's GPUs (`resources.gpu`), set torch threads and
    seeds, and turn user errors into one line."""
    log_path = smk.log[0] if len(smk.log) else None
    stream = open(log_path, "w", buffering=1) if log_path else sys.stderr  # noqa: SIM115
    logger = logging.getLogger(f"polneurons.{smk.rule}")
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [logging.StreamHandler(stream)]
    logger.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").handlers[:] = [logging.StreamHandler(stream)]
    stack = contextlib.ExitStack()
    try:
        with user_errors(logger):
            logger.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))
            gpus = pinned_gpus(int(getattr(smk.resources, "gpu", 0) or 0), logger)
            # before torch initializes CUDA: it reads CUDA_VISIBLE_DEVICES once
            stack.enter_context(gpus)
            import torch

            torch.set_num_threads(max(1, int(smk.threads)))
            if seed is not None:
                seed_everything(seed)
            try:
                yield RuleContext(log=logger, progress=stream)
            except PolneuronsError:
                raise
            except Exception as exc:
                # not a user error: the traceback goes to the rule's log, and Snakemake's output
                # gets one line naming the rule, the run and that log
                logger.exception(
                    "unexpected error in rule %s (please report it with this log)", smk.rule
                )
                print(unexpected_error_line(smk, exc, log_path), file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            logger.info("done")
    finally:
        stack.close()
        if stream is not sys.stderr:
            stream.close()
