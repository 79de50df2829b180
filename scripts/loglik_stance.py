"""loglik_stance: the judge-free stance, paired log-likelihood of right vs left answers (METHOD 4)."""

import json
from pathlib import Path

import pandas as pd

from polneurons.io import atomic_path
from polneurons.metrics import loglik_stance
from polneurons.models import load_run
from polneurons.prompts import adds_special_tokens, render, topic_split
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    record = json.loads(Path(snakemake.input.model).read_text())
    model, tok = load_run(record, snakemake.input.adapter, p.dtype, p.device)
    rows = []
    for topic in p.topics:
        pairs = topic_split(p.root, topic, p.data, p.seed).loglik
        values = loglik_stance(
            model,
            tok,
            [(render(tok, q.instruction, p.prompt_format), q.right, q.left) for q in pairs],
            batch_size=p.batch_size,
            add_special_tokens=adds_special_tokens(p.prompt_format),
        )
        rows += [
            {"topic": topic, "pair": q.index, "value": float(v)}
            for q, v in zip(pairs, values, strict=True)
        ]
        ctx.log.info("%s: S_ll %.3f over %d pairs", topic, float(values.mean()), len(pairs))
    with atomic_path(snakemake.output.loglik) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
