"""Training tables: each trained run's loss curve and summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polneurons.io import read_json
from polneurons.runs import run_of_path


def training_steps(train_dirs) -> pd.DataFrame:
    """Per optimizer step of every trained run (a `<run>/train` folder): model, leaning, source,
    condition, step, epoch, loss, lr, tokens, seconds (from its train_log.json)."""
    rows = []
    for folder in train_dirs:
        run = run_of_path(folder)  # <results>/<model>/<leaning>/<source>/<kind>/train
        rows += [{**run, **step} for step in read_json(Path(folder) / "train_log.json")["steps"]]
    return pd.DataFrame(rows)


def training_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Per trained run: steps, and the loss of its first and last step. (The seconds are in
    each train_log.json: wall time is no result, and the table stays byte-identical across runs.)

    >>> steps = pd.DataFrame({"model": "m", "leaning": "right", "source": "a", "condition":
    ...     "ft", "step": [1, 2, 3], "loss": [3.0, 2.5, 2.0], "seconds": [1.0, 2.0, 3.5]})
    >>> training_summary(steps)[["steps", "first_loss", "final_loss"]].values.tolist()
    [[3.0, 3.0, 2.0]]
    """
    keys = ["model", "leaning", "source", "condition"]
    ordered = steps.sort_values([*keys, "step"])
    return ordered.groupby(keys, as_index=False).agg(
        steps=("step", "max"), first_loss=("loss", "first"), final_loss=("loss", "last")
    )
