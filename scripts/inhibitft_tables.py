"""inhibitft_tables: vanilla control vs InhibitFT vs random inhibition (TS, CG, reductions with
CIs; method.md: Generalization, InhibitFT), the judge-free counterpart, perplexity, and the ablation over n. The draws
of a random control are pooled (mean, CI over prompts, spread _sd over draws); a second table
lists, per draw and layer, the neurons it could not match in their layer."""

import pandas as pd

from polneurons.io import read_json
from polneurons.metrics import generalization_with_ci
from polneurons.plots import ablation
from polneurons.rule import rule_context
from polneurons.tables.common import (
    arm_counts,
    collect_counts,
    collect_ratings,
    combine_reasons,
    control_table,
    labelled_runs,
    with_arm_counts,
    write_table,
)
from polneurons.tables.inhibitft import ablation_curve, loglik_cuts, loglik_summary
from polneurons.tables.stance import collect_loglik, loglik_shift

p, out = snakemake.params, snakemake.output

with rule_context(snakemake) as ctx:
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    mitigations, versus = [], []
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
        versus.append(tables["versus_random"].assign(leaning=leaning))
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
    versus = pd.concat(versus, ignore_index=True)
    front = ["model", "leaning", "source", "treated", "control"]
    write_table(
        versus[front + [c for c in versus.columns if c not in front]],
        out.versus_csv,
        out.versus_md,
        title="InhibitFT minus each of its controls, random and null (paired bootstrap CIs)",
    )

    per_pair = collect_loglik(snakemake.input.loglik)
    loglik = loglik_shift(per_pair, p.topics, **boot)
    summary = loglik_summary(loglik)
    write_table(
        summary, out.loglik_csv, out.loglik_md, title="Judge-free TS_ll and CG_ll per condition"
    )
    write_table(
        loglik_cuts(per_pair, p.control, **boot),
        out.cuts_csv,
        out.cuts_md,
        title=f"Judge-free claim 3: each arm's cut of CG_ll and TS_ll kept against {p.control}, "
        "and InhibitFT minus each of its controls (paired bootstrap over pairs)",
    )

    ppl = pd.DataFrame(
        [{**run, **read_json(path)} for path, run in labelled_runs(snakemake.input.perplexity)]
    )
    write_table(
        ppl, out.ppl_csv, out.ppl_md, title="Perplexity on held-out neutral IdeoINST answers"
    )

    ablation(ablation_curve(main, p.control), out.png, out.pdf)
    write_table(
        control_table(snakemake.input.controls),
        out.controls_csv,
        out.controls_md,
        title="Random inhibition control: per draw and layer, neurons not matched in their layer",
    )
