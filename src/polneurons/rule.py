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


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
            except Exception:
                # not a user error: keep the traceback in the rule's log too, where users look
                logger.exception(
                    "unexpected error in rule %s (please report it with this log)", smk.rule
                )
                raise
            logger.info("done")
    finally:
        stack.close()
        if stream is not sys.stderr:
            stream.close()
