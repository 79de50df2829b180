"""patching_tables: S of M0, M_s and each patched condition, and the share of the fine-tuning
shift each patch recovers, (S_patch - S_M0) / (S_Ms - S_M0), with bootstrap CIs, and its
dose-response over the top x% of G against random neurons (method.md: Activation patching).
The draws of the random control are pooled: their mean (CI over prompts) and spread (_sd);
a second table lists, per draw and layer, the neurons it could not match in their layer."""

import pandas as pd

from polneurons.kinds import CONDITION_FORM, condition_kind
from polneurons.plots import dose_response, patching_bars
from polneurons.rule import rule_context
from polneurons.tables.common import collect_counts, collect_ratings, control_table, write_table
from polneurons.tables.patching import (
    collect_crossed,
    dose_curve,
    patched_sizes,
    patching_leaning,
    specificity,
    with_patching_counts,
)

p, out = snakemake.params, snakemake.output
# the bars: every condition rated on its own test sets (the specificity runs apart), draws pooled
CONDITIONS = ["base", "ft"] + [
    condition_kind(c) for c in p.conditions if CONDITION_FORM[c].test_sets != "others"
]


with rule_context(snakemake) as ctx:
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    frames, bars, contrasts, specific = [], [], [], []
    crossed = collect_crossed(snakemake.input.crossed)
    for leaning, ratings in collect_ratings(snakemake.input.ratings).items():
        if crossed.get(leaning):
            specific.append(specificity(ratings, crossed[leaning], **boot).assign(leaning=leaning))
        tables = patching_leaning(ratings, **boot)
        frames.append(tables["table"].assign(leaning=leaning))
        contrasts.append(tables["contrasts"].assign(leaning=leaning))
        bars.append(tables["bars"])
    table = with_patching_counts(
        pd.concat(frames, ignore_index=True), collect_counts(snakemake.input.ratings)
    )
    write_table(
        table,
        out.csv,
        out.md,
        title="Activation patching: S and recovered share of the FT shift",
        explain=("S_M0", "S_Ms", "S", "recovered"),
    )
    ctx.log.info("\n%s", table[table["test_set"] == "all"].round(3).to_string(index=False))
    contrasts = pd.concat(contrasts, ignore_index=True)
    write_table(
        contrasts,
        out.contrasts_csv,
        out.contrasts_md,
        title="Recovered share of G minus that of each control (paired bootstrap CIs)",
    )
    controls = control_table(snakemake.input.controls)
    write_table(
        controls,
        out.controls_csv,
        out.controls_md,
        title="Random patching control: per draw and layer, neurons not matched in their layer",
    )
    patching_bars(pd.concat(bars, ignore_index=True), [c for c in CONDITIONS], out.png, out.pdf)
    curve = dose_curve(table, patched_sizes(snakemake.input.ratings))
    write_table(
        curve,
        out.dose_csv,
        out.dose_md,
        title="Dose-response: recovered share of the top x% of G and of random neurons outside G",
    )
    dose_response(curve, out.dose_png, out.dose_pdf)
    columns = ["model", "leaning", "source", "topic", "on_t", "on_t_lo", "on_t_hi", "on_others"]
    columns += ["on_others_lo", "on_others_hi", "difference", "difference_lo", "difference_hi"]
    write_table(
        pd.concat(specific, ignore_index=True)[[*columns, "verdict"]]
        if specific
        else pd.DataFrame(columns=[*columns, "verdict"]),
        out.specificity_csv,
        out.specificity_md,
        title="Is S_t specific to t? The shift patching S_t gives on t minus on the other topics",
    )
