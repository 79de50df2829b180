"""patching_tables: S of M0, M_s and each patched condition, and the share of the fine-tuning
shift each patch recovers, (S_patch - S_M0) / (S_Ms - S_M0), with bootstrap CIs, and its
dose-response over the top x% of G against random neurons (method.md: Activation patching).
The draws of the random control are pooled: their mean (CI over prompts) and spread (_sd);
a second table lists, per draw and layer, the neurons it could not match in their layer."""

import pandas as pd

from polneurons.metrics import bootstrap_scores, draw_spread, pool_draws, scores_table
from polneurons.plots import dose_response, patching_bars
from polneurons.rule import rule_context
from polneurons.runs import patch_kind
from polneurons.tables import (
    collect_counts,
    collect_crossed,
    collect_ratings,
    combine_reasons,
    control_table,
    dose_curve,
    patched_sizes,
    patching_contrasts,
    patching_recovered,
    specificity,
    with_run_counts,
    write_table,
)

p, out = snakemake.params, snakemake.output
CONDITIONS = ["base", "ft"] + [patch_kind(c) for c in p.conditions if c != "crossed"]


with rule_context(snakemake) as ctx:
    keys = ["model", "source", "condition", "test_set"]
    frames, bars, contrasts, specific = [], [], [], []
    crossed = collect_crossed(snakemake.input.crossed)
    for leaning, ratings in collect_ratings(snakemake.input.ratings).items():
        if crossed.get(leaning):
            boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
            specific.append(specificity(ratings, crossed[leaning], **boot).assign(leaning=leaning))
        per_draw = scores_table(ratings)
        point = pool_draws(per_draw, ["model", "source", "test_set"])
        reps = bootstrap_scores(ratings, n_boot=p.scoring["n_boot"], seed=p.seed)
        reps = pool_draws(reps, ["model", "source", "test_set", "replicate"])
        table = patching_recovered(point)
        contrasts.append(
            patching_contrasts(point, reps, p.scoring["alpha"]).assign(leaning=leaning)
        )
        measured = ["S", "recovered", "recovered_vs_all"]
        quantiles = patching_recovered(reps).groupby(keys)[measured]
        low = quantiles.quantile(p.scoring["alpha"] / 2).add_suffix("_lo")
        high = quantiles.quantile(1 - p.scoring["alpha"] / 2).add_suffix("_hi")
        spread = draw_spread(patching_recovered(per_draw), ["model", "source", "test_set"])
        table = (
            table.merge(low.join(high).reset_index(), on=keys, how="left")
            .merge(spread[[*keys, "S_sd", "recovered_sd"]], on=keys, how="left")
            .assign(leaning=leaning)
        )
        # the "all" rows of a condition have as many draws as its per-test-set rows
        table["draws"] = table.groupby(["model", "source", "condition"])["draws"].transform("max")
        frames.append(table)
        # the bar chart also shows M0 on each source's panel
        s_ci = reps.groupby(["model", "condition", "source", "test_set"])["S"]
        ci = (
            s_ci.quantile(p.scoring["alpha"] / 2)
            .rename("S_lo")
            .to_frame()
            .join(s_ci.quantile(1 - p.scoring["alpha"] / 2).rename("S_hi"))
            .reset_index()
        )
        point = point.merge(ci, on=["model", "condition", "source", "test_set"])
        base = point[point["condition"] == "base"]
        for source in sorted(set(point["source"]) - {"-"}):
            bars.append(pd.concat([base.assign(source=source), point[point["source"] == source]]))
    table = pd.concat(frames, ignore_index=True)
    # rated answers beside each S; the pooled rows ("all") sum them and have no S of their own
    counts = collect_counts(snakemake.input.ratings)
    table = with_run_counts(table, counts, "_M0", "base")
    table = with_run_counts(table, counts, "_Ms", "ft")
    table = combine_reasons(with_run_counts(table, counts), {"_M0": "M0", "_Ms": "M_s", "": ""})
    rated = ["n_rated_M0", "n_rated_Ms", "n_rated"]
    pooled = table["test_set"] == "all"
    sums = table[~pooled].groupby(["leaning", "model", "source", "condition"])[rated].sum()
    table.loc[pooled, rated] = sums.loc[
        list(table.loc[pooled, ["leaning", "model", "source", "condition"]].itertuples(index=False))
    ].to_numpy()
    table.loc[pooled, "why_undefined"] = "pooled (S per test set)"
    table[rated] = table[rated].astype("Int64")
    columns = [
        "model",
        "leaning",
        "source",
        "condition",
        "test_set",
        "S_M0",
        "n_rated_M0",
        "S_Ms",
        "n_rated_Ms",
        "S",
        "n_rated",
        "S_lo",
        "S_hi",
        "recovered",
        "recovered_lo",
        "recovered_hi",
        "recovered_vs_all",
        "recovered_vs_all_lo",
        "recovered_vs_all_hi",
        "why_undefined",
        "draws",
        "S_sd",
        "recovered_sd",
    ]
    table = table[table["condition"] != "ft"][columns].sort_values(
        ["model", "leaning", "source", "condition", "test_set"]
    )
    write_table(
        table,
        out.csv,
        out.md,
        title="Activation patching: S and recovered share of the FT shift",
        explain=("S_M0", "S_Ms", "S"),
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
