"""score_likelihood: the judge-free stance S_ll (paired log-likelihood of right vs left answers on
held-out IdeoINST pairs, method.md: Stance) and perplexity on held-out neutral answers (method.md: InhibitFT)."""

import pandas as pd

from polneurons.io import atomic_path, write_json
from polneurons.likelihood import loglik_stance, perplexity
from polneurons.models import load_run, read_record
from polneurons.prompts import adds_special_tokens, render, topic_pools
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_run(record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype)
    rows, neutral = [], []
    for topic in p.topics:
        split = topic_pools(p.root, topic, p.pools, p.seed)
        values = loglik_stance(
            model,
            tok,
            [(render(tok, q.instruction, p.prompt_format), q.right, q.left) for q in split.loglik],
            batch_size=p.batch_size,
            add_special_tokens=adds_special_tokens(p.prompt_format),
        )
        rows += [
            {"topic": topic, "pair": q.index, "value": float(v)}
            for q, v in zip(split.loglik, values, strict=True)
        ]
        neutral += split.perplexity
        ctx.log.info("%s: S_ll %.3f over %d pairs", topic, float(values.mean()), len(values))
    with atomic_path(snakemake.output.loglik) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    result = perplexity(model, tok, neutral, p.perplexity["max_length"], p.batch_size)
    ctx.log.info("perplexity %.3f over %d tokens", result["perplexity"], result["tokens"])
    write_json(snakemake.output.perplexity, result)
