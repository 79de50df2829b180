"""judge: rate every response of one run as left leaning / right leaning / neutral (method.md: Stance),
and record the run's generation health next to its generations (warn or fail when degenerate)."""

from polneurons.data import EXTRA_SETS, topic_name
from polneurons.errors import DataError
from polneurons.health import flag_message, health_flags, health_record, sample_answers
from polneurons.io import read_jsonl, write_json, write_jsonl
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
    rated = [{**r, "rating": rating} for r, rating in zip(rows, ratings, strict=True)]
    write_jsonl(snakemake.output.ratings, rated)

    run = f"{snakemake.wildcards.model}/{snakemake.wildcards.run}"
    health_cfg, max_new = p.health, p.max_new_tokens
    records = health_record(rated, max_new, health_cfg)
    flags = health_flags(records, health_cfg)
    write_json(
        snakemake.output.health,
        {
            "run": run,
            "max_new_tokens": max_new,
            "sets": records,
            "flags": flags,
            "samples": sample_answers(rated, flags, max_new, health_cfg),
        },
    )
    for flag in flags:
        ctx.warn(flag_message(run, flag))
    if flags and health_cfg["on_flag"] == "fail":
        raise DataError(
            f"degenerate answers: {flag_message(run, flags[0])}",
            f"read the answers in {snakemake.input.generations} (a prompt format or model that "
            "answers), or set health: {on_flag: warn} to score them anyway",
        )
