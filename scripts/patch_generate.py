"""patch_generate: lockstep generation, M_s's activations on a neuron set patched into M0 (method.md: Activation patching)."""

from polneurons.io import write_jsonl
from polneurons.kinds import answered_sets, parse_kind, patch_kind
from polneurons.models import load_contrast_pair, read_record
from polneurons.neuron_store import patch_set
from polneurons.neurons import NeuronSet
from polneurons.patching import patched_rows
from polneurons.prompts import adds_special_tokens, eval_items, eval_prompts
from polneurons.rule import rule_context

p = snakemake.params
condition = snakemake.wildcards.condition
with rule_context(snakemake, seed=p.seed) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_contrast_pair(
        record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype
    )
    # every test set with G and the sets of no topic; S_t on its own topic t, or for the
    # specificity test (crossed) on every other topic (kinds.Form.test_sets)
    kind = patch_kind(condition)
    by_topic = parse_kind(kind).declared.test_sets == "others"
    rows = []
    for topic, test_sets in answered_sets(kind, p.topics, p.test_sets):
        if snakemake.input.get("control"):  # a drawn random control (rule random_control)
            neurons = NeuronSet.load(snakemake.input.control)
        else:
            neurons = patch_set(snakemake.input.neurons, condition, topic, site=p.site, seed=p.seed)
        items = eval_items(p.root, test_sets, p.eval_prompts)
        prompts = eval_prompts(p.root, tok, items, p.prompt_format, p.topic_names)
        ctx.log.info("%s: %d neurons, %d prompts", topic or condition, len(neurons), len(prompts))
        answered = patched_rows(
            model,
            tok,
            items,
            prompts,
            neurons,
            p.generation,
            add_special_tokens=adds_special_tokens(p.prompt_format),
            progress=ctx.progress,
        )
        patched_topic = {"patched_topic": topic} if by_topic else {}
        rows += [row | patched_topic for row in answered]
    write_jsonl(snakemake.output.generations, rows)
