"""generate: greedy answers of one run (base or fine-tuned) to every evaluation prompt (method.md: Stance)."""

from polneurons.generation import greedy_generate
from polneurons.io import write_jsonl
from polneurons.models import load_run, read_record
from polneurons.prompts import adds_special_tokens, eval_items, eval_prompts
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_run(record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype)
    items = eval_items(p.root, p.test_sets, p.eval_prompts)
    prompts = eval_prompts(p.root, tok, items, p.prompt_format, p.topic_names)
    ctx.log.info("%d prompts over %s", len(prompts), ", ".join(p.test_sets))
    responses, n_tokens = greedy_generate(
        model,
        tok,
        prompts,
        max_new_tokens=p.generation["max_new_tokens"],
        batch_size=p.generation["batch_size"],
        add_special_tokens=adds_special_tokens(p.prompt_format),
        progress=ctx.progress,
        return_token_counts=True,
    )
    write_jsonl(
        snakemake.output.generations,
        (
            {**it, "prompt": pr, "response": r, "n_new_tokens": n}
            for it, pr, r, n in zip(items, prompts, responses, n_tokens, strict=True)
        ),
    )
