"""stance_tables: dS(s -> t), TS and CG with CIs, the judge-free shift, and the heatmap (method.md: Generalization, Outputs)."""

import pandas as pd

from polneurons.kinds import split_replicate
from polneurons.metrics import generalization_with_ci
from polneurons.plots import stance_heatmap
from polneurons.rule import rule_context
from polneurons.tables.common import (
    arm_counts,
    collect_counts,
    collect_ratings,
    combine_reasons,
    with_arm_counts,
    with_run_counts,
    write_table,
)
from polneurons.tables.stance import collect_loglik, loglik_shift, loglik_versus, versus_null

p, out = snakemake.params, snakemake.output
with rule_context(snakemake) as ctx:
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    deltas, tscgs, versus = [], [], []
    for leaning, ratings in collect_ratings(snakemake.input.ratings).items():
        # claim 1's control: the null fine-tune (null_finetune), judged like the vanilla one
        controls = (
            [("ft", "null")] if any(split_replicate(key[1])[0] == "null" for key in ratings) else []
        )
        tables = generalization_with_ci(
            ratings, p.topics, extra_sets=p.extra_sets, controls=controls, **boot
        )
        deltas.append(tables["delta"].assign(leaning=leaning))
        tscgs.append(tables["tscg"].assign(leaning=leaning))
        if controls:
            versus.append(tables["tscg_versus"].assign(leaning=leaning))
    delta, tscg = pd.concat(deltas), pd.concat(tscgs)
    # rated answers beside each S, and why an S (or a shift from it) is undefined
    counts = collect_counts(snakemake.input.ratings)
    delta = with_run_counts(with_run_counts(delta, counts, "_base", "base"), counts)
    delta = combine_reasons(delta, {"_base": "base", "": ""})
    shift_cols = ["model", "leaning", "source", "condition", "test_set", "S_base", "n_rated_base"]
    shift_cols += ["S"]
    shift_cols += ["n_rated", "dS", "dS_lo", "dS_hi", "why_undefined"]
    # pooled over training replicates (training_seeds > 1): their number and spread
    shift_cols += [c for c in ("seeds", "dS_sd") if c in delta.columns]
    write_table(
        delta[shift_cols],
        out.shift_csv,
        out.shift_md,
        title="Stance shift dS(s -> t) after vanilla FT",
        explain=("S_base", "S", "dS"),
    )
    tscg = combine_reasons(with_arm_counts(tscg, arm_counts(counts)), {"": ""})
    front = ["model", "source", "condition", "n_rated"]
    write_table(
        tscg[front + [c for c in tscg.columns if c not in front]],
        out.tscg_csv,
        out.tscg_md,
        title="Topic shift TS and cross-topic CG",
        explain=("TS", "CG", *(f"CG_{name}" for name in p.extra_sets)),
    )
    ctx.log.info("\n%s", tscg.round(3).to_string(index=False))
    write_table(
        versus_null(versus, tscg),
        out.null_csv,
        out.null_md,
        title="Claim 1's control: TS and CG of the vanilla fine-tune minus the null fine-tune's "
        "(paired CIs)",
    )
    pairs = collect_loglik(snakemake.input.loglik)
    loglik = loglik_shift(pairs, p.topics, **boot)
    write_table(loglik, out.loglik_csv, out.loglik_md, title="Judge-free stance shift dS_ll")
    write_table(
        loglik_versus(pairs, loglik, p.topics, [("ft", "null")], **boot),
        out.null_ll_csv,
        out.null_ll_md,
        title="Claim 1's control without a judge: TS_ll and CG_ll of the vanilla fine-tune minus "
        "the null fine-tune's (paired over held-out pairs)",
    )
    # the heatmap is the vanilla fine-tunes' (the null fine-tune's rows are its control)
    stance_heatmap(
        delta[delta["condition"] == "ft"],
        list(p.topics) + list(p.extra_sets),
        out.heatmap_png,
        out.heatmap_pdf,
    )
