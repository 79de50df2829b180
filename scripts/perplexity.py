"""perplexity: general capability of one run on held-out neutral IdeoINST answers (METHOD 8)."""

import json
from pathlib import Path

from polneurons.capability import perplexity
from polneurons.io import write_json
from polneurons.models import load_run
from polneurons.prompts import topic_split
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    record = json.loads(Path(snakemake.input.model).read_text())
    model, tok = load_run(record, snakemake.input.adapter, p.dtype, p.device)
    texts = [
        text
        for topic in p.topics
        for text in topic_split(p.root, topic, p.data, p.seed, p.perplexity["texts"]).neutral
    ]
    result = perplexity(model, tok, texts, p.perplexity["max_length"], p.batch_size)
    ctx.log.info("perplexity %.3f over %d tokens", result["perplexity"], result["tokens"])
    write_json(snakemake.output.perplexity, result)
