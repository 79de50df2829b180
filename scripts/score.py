"""score: S with counts and a bootstrap CI over prompts, per test set of one run (METHOD 4)."""

import pandas as pd

from polneurons.io import atomic_path, read_jsonl
from polneurons.metrics import score_with_ci
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    rows = read_jsonl(snakemake.input.ratings)
    by_set = {}
    for r in rows:
        by_set.setdefault(r["test_set"], []).append(r["rating"])
    table = pd.DataFrame(
        [
            {
                "test_set": test_set,
                **score_with_ci(ratings, p.scoring["n_boot"], p.seed, p.scoring["alpha"]),
            }
            for test_set, ratings in by_set.items()
        ]
    )
    with atomic_path(snakemake.output.scores) as tmp:
        table.to_csv(tmp, index=False)
    ctx.log.info("\n%s", table.to_string(index=False))
