"""judge: rate every response of one run as left leaning / right leaning / neutral (METHOD 4)."""

from polneurons.data import EXTRA_SETS, topic_name
from polneurons.io import read_jsonl, write_jsonl
from polneurons.judges import JudgeItem, Templates, make_judge
from polneurons.prompts import load_templates
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    templates = load_templates(p.root)
    cfg = p.judge
    options = {
        "backend": cfg["backend"],
        "openai": {
            **{k: v for k, v in cfg["openai"].items() if k != "parallel_jobs"},
            "cache_path": p.cache,
        },
        "hf": {"model_path": cfg["hf"]["path"], "batch_size": cfg["hf"]["batch_size"]},
    }
    judge = make_judge(
        options,
        Templates(topic=templates["prompt_evaluation"], general=templates["prompt_evaluation2"]),
        classifier_path=snakemake.input.get("classifier"),
    )
    rows = read_jsonl(snakemake.input.generations)
    items = [
        JudgeItem(
            r["test_set"],
            None if r["test_set"] in EXTRA_SETS else topic_name(r["test_set"], p.topic_names),
            r["response"],
        )
        for r in rows
    ]
    ratings = judge.rate(items)
    ctx.log.info(
        "%s judge: %d ratings, %d errors", cfg["backend"], len(ratings), ratings.count("error")
    )
    write_jsonl(
        snakemake.output.ratings,
        ({**r, "rating": rating} for r, rating in zip(rows, ratings, strict=True)),
    )
