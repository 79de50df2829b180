"""judge_table: the classifier judge's held-out agreement with GPT-4's labels (method.md: Stance)."""

import pandas as pd

from polneurons.io import read_json
from polneurons.rule import rule_context
from polneurons.tables import write_table

with rule_context(snakemake) as ctx:
    agreement = read_json(snakemake.input.agreement)
    rows = [
        {
            "scope": "all",
            "accuracy": agreement["accuracy"],
            "kappa": agreement["kappa"],
            "n_train": agreement["n_train"],
            "n_test": agreement["n_test"],
        }
    ]
    rows += [
        {"scope": topic, "kappa": kappa}
        for topic, kappa in agreement.get("kappa_by_topic", {}).items()
    ]
    write_table(
        pd.DataFrame(rows),
        snakemake.output.csv,
        snakemake.output.md,
        title="Classifier judge vs GPT-4 labels (held-out instructions)",
    )
