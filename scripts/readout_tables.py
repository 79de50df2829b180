"""readout_tables: the teacher-forced readout's shares per neuron set and direction, with
paired bootstrap CIs over pairs, each set of G against its random control, and the
dose-response in both readouts beside the judge's (method.md: Teacher-forced readout)."""

from polneurons.plots import dose_response
from polneurons.rule import rule_context
from polneurons.tables.common import read_table, write_table
from polneurons.tables.readout import (
    collect_readouts,
    dose_curves,
    readout_tables,
    specificity_readout,
)

p, out = snakemake.params, snakemake.output
with rule_context(snakemake) as ctx:
    readouts = collect_readouts(snakemake.input.readouts)
    boot = dict(n_boot=p.scoring["n_boot"], seed=p.seed, alpha=p.scoring["alpha"])
    shares, contrasts = readout_tables(readouts, **boot)
    write_table(
        shares,
        out.csv,
        out.md,
        title="Teacher-forced readout: share of the FT shift of S_ll recovered by writing a set "
        "into M0 (sufficiency) or removed by writing M0's values into M_s (necessity)",
        explain=("share",),
    )
    write_table(
        contrasts,
        out.contrasts_csv,
        out.contrasts_md,
        title="Teacher-forced readout: share of each set of G minus its random control "
        "(paired bootstrap CIs over pairs)",
    )
    ctx.log.info("\n%s", shares[shares["topic"] == "all"].round(3).to_string(index=False))
    curves = dose_curves(read_table(snakemake.input.dose), shares)
    write_table(
        curves,
        out.dose_csv,
        out.dose_md,
        title="Dose-response in both readouts: the judge's recovered share and the "
        "teacher-forced share in each direction, of the top x% of G and of random neurons",
    )
    dose_response(curves, out.dose_png, out.dose_pdf, value="share")
    write_table(
        specificity_readout(readouts, **boot),
        out.specificity_csv,
        out.specificity_md,
        title="Teacher-forced readout: is S_t specific to its topic? Its signed S_ll shift on t "
        "minus its mean shift on the other topics (condition crossed), per direction",
        explain=("on_t", "on_others", "difference"),
    )
