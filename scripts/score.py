"""score: S with counts and a bootstrap CI over prompts, per test set of one run (method.md: Stance)."""

import pandas as pd

from polneurons.health import is_empty, undefined_reason
from polneurons.io import atomic_path, read_jsonl
from polneurons.metrics import score_with_ci
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    rows = read_jsonl(snakemake.input.ratings)
    by_set = {}
    for r in rows:
        by_set.setdefault(r["test_set"], []).append(r)
    records = []
    for test_set, group in by_set.items():
        ratings = [r["rating"] for r in group]
        score = score_with_ci(ratings, p.scoring["n_boot"], p.seed, p.scoring["alpha"])
        n_rated = score["n"] - score["n_error"]
        n_empty = sum(is_empty(r["response"]) for r in group)
        why = undefined_reason(score["n"], n_rated, n_empty)
        records.append({"test_set": test_set, **score, "n_rated": n_rated, "why_undefined": why})
    table = pd.DataFrame(records)
    with atomic_path(snakemake.output.scores) as tmp:
        table.to_csv(tmp, index=False)
    ctx.log.info("\n%s", table.to_string(index=False))
