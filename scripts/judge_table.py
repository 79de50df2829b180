"""judge_table: which judge rated, what it returned over every answer, and its agreement with
GPT-4's labels where measured (method.md: Stance)."""

from polneurons.io import read_json, read_jsonl
from polneurons.judges import cached_answer_count, judge_name
from polneurons.rule import rule_context
from polneurons.tables.common import write_table
from polneurons.tables.stance import judge_rows

p = snakemake.params
with rule_context(snakemake) as ctx:
    backend = p.judge["backend"]
    ratings = [row["rating"] for path in snakemake.input.ratings for row in read_jsonl(path)]
    agreement = snakemake.input.get("agreement")
    table = judge_rows(
        backend,
        judge_name(p.judge),
        ratings,
        agreement=read_json(agreement) if agreement else None,
        cached_answers=cached_answer_count(p.cache) if backend == "openai" else None,
    )
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        title=f"The {backend} judge: its ratings, and its agreement with GPT-4's labels",
        explain=("accuracy", "kappa"),
    )
