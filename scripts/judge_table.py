"""judge_table: which judge rated, what it returned over every answer, and its agreement with
GPT-4's labels where measured, on whole held-out answers and on the same answers cut to the
tokens a run generates (method.md: Stance)."""

from polneurons.io import read_json, read_jsonl
from polneurons.judge_classifier import ClassifierJudge
from polneurons.judges import cached_answer_count, judge_name
from polneurons.models import load_tokenizer, read_record
from polneurons.rule import rule_context
from polneurons.tables.common import write_table
from polneurons.tables.stance import judge_rows

p = snakemake.params
with rule_context(snakemake) as ctx:
    backend = p.judge["backend"]
    ratings = [row["rating"] for path in snakemake.input.ratings for row in read_jsonl(path)]
    agreement = snakemake.input.get("agreement")
    truncated = None
    if snakemake.input.get("classifier"):
        classifier = ClassifierJudge.load(snakemake.input.classifier)
        truncated = {
            model: classifier.truncated_agreement(
                load_tokenizer(read_record(record)), p.max_new_tokens
            )
            for model, record in zip(p.models, snakemake.input.models, strict=True)
        }
        for model, result in truncated.items():
            ctx.log.info(
                "%s: agreement on held-out answers cut to %d tokens: accuracy %.3f, kappa %.3f",
                model,
                p.max_new_tokens,
                result["accuracy"],
                result["kappa"],
            )
    table = judge_rows(
        backend,
        judge_name(p.judge),
        ratings,
        agreement=read_json(agreement) if agreement else None,
        cached_answers=cached_answer_count(p.cache) if backend == "openai" else None,
        truncated=truncated,
    )
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        title=f"The {backend} judge: its ratings, and its agreement with GPT-4's labels",
        explain=("accuracy", "kappa"),
    )
