"""inhibition_effect: does the inhibition act? For each InhibitFT and random-inhibition run, how
far its inhibited neurons (and the rest of G, and all other neurons) moved from the base model,
against how far the same neurons moved under vanilla FT (method.md: InhibitFT)."""

from pathlib import Path

import pandas as pd

from polneurons.activations import topic_contrast
from polneurons.kinds import parse_kind
from polneurons.neuron_store import inhibited_set, load_general
from polneurons.neurons import NeuronSet
from polneurons.rule import rule_context
from polneurons.tables.common import write_table
from polneurons.tables.inhibitft import inhibition_effect

p, inp = snakemake.params, snakemake.input
# <results>/<model>/<leaning>/<source>/<kind>/control/neurons.pt, keyed by its run (the draw's
# kind: every training replicate of a draw inhibits the same set)
controls = {tuple(Path(path).parts[-6:-2]): path for path in inp.control}
with rule_context(snakemake) as ctx:
    rows = []
    for (model, leaning, source, kind), run_dump, vanilla_dump, neurons, inhibited_from in zip(
        p.runs, inp.run, inp.vanilla, inp.neurons, inp.inhibited_from, strict=True
    ):
        parsed = parse_kind(kind)
        general = load_general(neurons, p.site)
        if parsed.is_control:
            inhibited = NeuronSet.load(controls[(model, leaning, source, parsed.first)])
        else:
            # F_n of G; the null control (nift-...): as many neurons, the top of G_null
            spec = dict(n=parsed.n, of=p.of, site=p.site, from_dir=inhibited_from)
            inhibited = inhibited_set(neurons, **spec)
        moved = inhibition_effect(
            topic_contrast(run_dump, "rms"), topic_contrast(vanilla_dump, "rms"), inhibited, general
        )
        rows += [
            dict(model=model, leaning=leaning, source=source, condition=kind, **r) for r in moved
        ]
    table = pd.DataFrame(rows)
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        title="Does the inhibition act? How far each set moved from M0, against vanilla FT",
    )
    ctx.log.info("\n%s", table.round(3).to_string(index=False))
