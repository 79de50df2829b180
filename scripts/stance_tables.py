"""stance_tables: dS(s -> t), TS and CG with CIs, the judge-free shift, and the heatmap (METHOD 5, 9)."""

import pandas as pd

from polneurons.metrics import generalization_with_ci
from polneurons.plots import stance_heatmap
from polneurons.rule import rule_context
from polneurons.tables import collect_loglik, collect_ratings, loglik_shift, write_table

p, out = snakemake.params, snakemake.output
with rule_context(snakemake) as ctx:
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    deltas, tscgs = [], []
    for leaning, ratings in collect_ratings(snakemake.input.ratings).items():
        tables = generalization_with_ci(ratings, p.topics, extra_sets=p.extra_sets, **boot)
        deltas.append(tables["delta"].assign(leaning=leaning))
        tscgs.append(tables["tscg"].assign(leaning=leaning))
    delta, tscg = pd.concat(deltas), pd.concat(tscgs)
    shift_cols = ["model", "leaning", "source", "test_set", "S_base", "S", "dS", "dS_lo", "dS_hi"]
    write_table(
        delta[shift_cols],
        out.shift_csv,
        out.shift_md,
        title="Stance shift dS(s -> t) after vanilla FT",
    )
    write_table(
        tscg.drop(columns="condition"),
        out.tscg_csv,
        out.tscg_md,
        title="Topic shift TS and cross-topic CG",
    )
    ctx.log.info("\n%s", tscg.round(3).to_string(index=False))
    loglik = loglik_shift(collect_loglik(snakemake.input.loglik), p.topics, **boot)
    write_table(loglik, out.loglik_csv, out.loglik_md, title="Judge-free stance shift dS_ll")
    stance_heatmap(delta, list(p.topics) + list(p.extra_sets), out.heatmap_png, out.heatmap_pdf)
