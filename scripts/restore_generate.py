"""restore_generate: InhibitFT's vanilla control generates with F_n restored to M0's values at
every position (method.md: InhibitFT, restore): the training-free mitigation InhibitFT must beat."""

from polneurons.io import write_jsonl
from polneurons.models import load_contrast_pair, read_record
from polneurons.neuron_store import inhibited_set
from polneurons.patching import patched_rows
from polneurons.prompts import adds_special_tokens, eval_items, eval_prompts
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_contrast_pair(
        record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype
    )
    n = float(snakemake.wildcards.n)
    neurons = inhibited_set(snakemake.input.neurons, n=n, of=p.of, site=p.site)
    items = eval_items(p.root, p.test_sets, p.eval_prompts)
    prompts = eval_prompts(p.root, tok, items, p.prompt_format, p.topic_names)
    ctx.log.info("F_%g: %d neurons restored, %d prompts", n, len(neurons), len(prompts))
    rows = patched_rows(
        model,
        tok,
        items,
        prompts,
        neurons,
        p.generation,
        add_special_tokens=adds_special_tokens(p.prompt_format),
        progress=ctx.progress,
        direction="necessity",
    )
    write_jsonl(snakemake.output.generations, rows)
