"""random_control: one draw of a random control, none of its neurons in the treated set (method.md: Activation patching, InhibitFT)."""

from polneurons.neuron_store import random_control, save_control
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    control, report = random_control(snakemake.input.neurons, p.spec, p.seed)
    ctx.log.info(
        "%d random neurons like %s (draw %d): %d overlap the treated set, %d unmatched in their layer",
        report["size"],
        p.spec["treated"],
        p.spec["draw"],
        report["overlap"],
        report["unmatched_total"],
    )
    save_control(control, report, snakemake.output.neurons, snakemake.output.report)
