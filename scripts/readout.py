"""readout: the teacher-forced causal readout of one fine-tuned run on one topic (method.md:
Teacher-forced readout): per held-out readout pair of the topic, S_ll of M0, of M_s and of every
patched neuron set in both directions (M_s's values written into M0, M0's into M_s); with
condition crossed, also S_t of every other topic t on this topic's pairs (`patched_topic`)."""

import pandas as pd

from polneurons.io import atomic_path
from polneurons.kinds import parse_kind, readout_control_input, with_draw
from polneurons.models import load_contrast_pair, read_record
from polneurons.neuron_store import SPECIFIC_RANDOM, patch_set, specific_random
from polneurons.neurons import NeuronSet
from polneurons.prompts import adds_special_tokens, render, topic_pools
from polneurons.readout import BASE, TUNED, intervened_stance
from polneurons.rule import rule_context
from polneurons.tables.readout import crossed_set_name, split_crossed

p = snakemake.params
# the models' own rows under the condition names of the patching tables
OWN = {BASE: "base", TUNED: "ft"}


def neuron_set(kind: str, topic: str) -> NeuronSet:
    """The set a patching kind writes on `topic`'s pairs: a drawn control's, or the localized one."""
    parsed = parse_kind(kind)
    if parsed.is_control:
        return NeuronSet.load(snakemake.input[readout_control_input(kind)])
    folder = snakemake.input[f"neurons_{parsed.localized_on}"]
    return patch_set(folder, kind.removeprefix("patch-"), topic, site=p.site)


with rule_context(snakemake, seed=p.seed) as ctx:
    record = read_record(snakemake.input.model)
    model, tok = load_contrast_pair(
        record, snakemake.input.adapter, p.dtype, p.device, p.adapter_dtype
    )
    topic = snakemake.wildcards.topic
    pairs = topic_pools(p.root, topic, p.pools, p.seed).readout
    sets = {kind: neuron_set(kind, topic).by_layer() for kind in p.kinds}
    if "patch-specific" in p.kinds:  # S_t's size-matched random control, drawn here
        folder = snakemake.input["neurons_ft"]
        for draw in range(p.draws):
            control = specific_random(folder, topic, site=p.site, seed=p.seed, draw=draw)
            sets[with_draw(SPECIFIC_RANDOM, draw)] = control.by_layer()
    for other in p.crossed_topics:  # S_t of each other topic on this topic's pairs
        if other != topic:
            crossed = patch_set(snakemake.input["neurons_ft"], "specific", other, site=p.site)
            sets[crossed_set_name(other)] = crossed.by_layer()
    values = intervened_stance(
        model,
        tok,
        [(render(tok, q.instruction, p.prompt_format), q.right, q.left) for q in pairs],
        p.site,
        sets,
        batch_size=p.batch_size,
        add_special_tokens=adds_special_tokens(p.prompt_format),
        answer_tokens=p.answer_tokens,
    )
    rows = []
    for (name, direction), scores in values.items():
        condition, patched_topic = split_crossed(OWN.get(name, name))
        rows += [
            {
                "condition": condition,
                "direction": direction,
                "topic": topic,
                "patched_topic": patched_topic,
                "pair": q.index,
                "S_ll": float(v),
            }
            for q, v in zip(pairs, scores, strict=True)
        ]
    ctx.log.info(
        "%s: S_ll M0 %.3f, M_s %.3f over %d pairs, %d sets",
        topic,
        values[BASE, ""].mean(),
        values[TUNED, ""].mean(),
        len(pairs),
        len(sets),
    )
    with atomic_path(snakemake.output.readout) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
