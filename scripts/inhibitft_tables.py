"""inhibitft_tables: vanilla control vs InhibitFT vs random inhibition (TS, CG, reductions with
CIs, METHOD 5 and 8), the judge-free counterpart, perplexity, and the ablation over n. The draws
of a random control are pooled (mean, CI over prompts, spread _sd over draws); a second table
lists, per draw and layer, the neurons it could not match in their layer."""

import pandas as pd

from polneurons.io import read_json
from polneurons.metrics import draw_spread, generalization_with_ci, pool_draws
from polneurons.plots import ablation
from polneurons.rule import rule_context
from polneurons.runs import parse_kind, run_of_path
from polneurons.tables import (
    arm_counts,
    collect_counts,
    collect_loglik,
    collect_ratings,
    combine_reasons,
    control_table,
    loglik_shift,
    with_arm_counts,
    write_table,
)

p, out = snakemake.params, snakemake.output

with rule_context(snakemake) as ctx:
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    mitigations = []
    for leaning, ratings in collect_ratings(snakemake.input.ratings).items():
        conditions = sorted({key[1] for key in ratings} - {"base", p.control})
        tables = generalization_with_ci(
            ratings,
            p.topics,
            x_conditions=conditions,
            ft_condition=p.control,
            extra_sets=p.extra_sets,
            **boot,
        )
        mitigations.append(tables["mitigation"].assign(leaning=leaning))
    main = pd.concat(mitigations, ignore_index=True)
    front = ["model", "leaning", "source", "condition"]
    main = main[front + [c for c in main.columns if c not in front]]
    # rated answers of the control and of X beside their scores; why a score is undefined
    arms = arm_counts(collect_counts(snakemake.input.ratings))
    main = with_arm_counts(with_arm_counts(main, arms, "_ft", p.control), arms, "_x")
    main = combine_reasons(main, {"_ft": f"control ({p.control})", "_x": "X"})
    write_table(
        main,
        out.csv,
        out.md,
        out.tex,
        title=f"InhibitFT vs the vanilla control ({p.control})",
        explain=("CG_ft", "TS_ft", "CG_x", "TS_x"),
    )
    ctx.log.info("\n%s", main[main["source"] == "mean"].round(3).to_string(index=False))

    loglik = loglik_shift(collect_loglik(snakemake.input.loglik), p.topics, **boot)
    summary = (
        loglik[loglik["topic"].isin(["TS_ll", "CG_ll"])]
        .pivot_table(
            index=["model", "leaning", "source", "condition"], columns="topic", values="dS_ll"
        )
        .reset_index()
        .rename_axis(columns=None)
    )
    arm = ["model", "leaning", "source"]
    summary = pool_draws(summary, arm).merge(
        draw_spread(summary, arm), on=["condition", *arm], how="left"
    )
    write_table(
        summary, out.loglik_csv, out.loglik_md, title="Judge-free TS_ll and CG_ll per condition"
    )

    ppl = pd.DataFrame(
        [{**run_of_path(path), **read_json(path)} for path in snakemake.input.perplexity]
    )
    write_table(
        ppl, out.ppl_csv, out.ppl_md, title="Perplexity on held-out neutral IdeoINST answers"
    )

    curve = []
    per_model = main[(main["source"] == "mean") & (main["model"] != "mean")]
    for _, row in per_model.iterrows():
        kind = parse_kind(row["condition"], pooled=True)
        label = f"{'InhibitFT' if kind.family == 'ift' else 'random'} ({kind.strategy})"
        for metric in ("CG", "TS"):
            curve.append(
                {
                    "model": row["model"],
                    "condition": label,
                    "n": kind.n,
                    "metric": metric,
                    "value": row[f"{metric}_x"],
                    "lo": row[f"{metric}_x_lo"],
                    "hi": row[f"{metric}_x_hi"],
                }
            )
    for (model,), group in per_model.groupby(["model"]):
        for metric in ("CG", "TS"):
            curve.append(
                {
                    "model": model,
                    "condition": f"vanilla ({p.control})",
                    "n": float("nan"),
                    "metric": metric,
                    "value": group[f"{metric}_ft"].iloc[0],
                }
            )
    ablation(pd.DataFrame(curve), out.png, out.pdf)
    write_table(
        control_table(snakemake.input.controls),
        out.controls_csv,
        out.controls_md,
        title="Random inhibition control: per draw and layer, neurons not matched in their layer",
    )
