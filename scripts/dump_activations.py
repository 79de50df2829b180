"""dump_activations: contrast M_s (adapter on) with M0 (adapter off) on one topic's prompts (method.md: PNLAC)."""

from pathlib import Path

from polneurons import __version__
from polneurons.activations import dump_activations, instruction_spans
from polneurons.models import adapter_sha256, load_contrast_pair, read_record
from polneurons.prompts import adds_special_tokens, eval_prompts, localize_items
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_contrast_pair(
        record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype
    )
    items = localize_items(p.root, snakemake.wildcards.topic, p.pools, p.seed, p.eval_prompts)
    prompts = eval_prompts(p.root, tok, items, p.prompt_format, p.topic_names)
    only_instruction = p.neurons["tokens"] == "instruction"
    spans = instruction_spans(prompts, [it["text"] for it in items]) if only_instruction else None
    meta = {
        "model": record["source"],
        "model_sha256": record["config_sha256"],
        "adapter_sha256": adapter_sha256(Path(snakemake.input.adapter) / "adapter"),
        "topic": snakemake.wildcards.topic,
        "polneurons": __version__,
    }
    manifest = dump_activations(
        model,
        tok,
        prompts,
        [it["id"] for it in items],
        snakemake.output.dump,
        site=p.neurons["site"],
        batch_size=p.neurons["batch_size"],
        shard_size=p.neurons["shard_size"],
        raw_tokens=p.neurons["raw_tokens"],
        add_special_tokens=adds_special_tokens(p.prompt_format),
        meta=meta,
        progress=ctx.progress,
        spans=spans,
    )
    ctx.log.info("%d prompts in %d shards", len(items), len(manifest["shards"]))
