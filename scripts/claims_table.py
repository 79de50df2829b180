"""claims_table: each claim of the paper, its figure, each control's figure and a verdict from a
rule stated in the table (method.md: The claims under test)."""

import pandas as pd

from polneurons.rule import rule_context
from polneurons.tables import claims_table, write_table

p, inp = snakemake.params, snakemake.input


def read(name):
    return pd.read_csv(inp[name]) if name in inp.keys() else None


with rule_context(snakemake) as ctx:
    table = claims_table(
        read("tscg"),
        neuron_sets=read("neuron_sets"),
        patching=read("patching"),
        contrasts=read("contrasts"),
        inhibitft=read("inhibitft"),
        versus=read("versus"),
        headline_n=p.headline_n,
        specific=read("specificity"),
    ).assign(recipe=p.recipe)
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        title=f"The paper's claims, measured (PNLAC recipe {p.recipe})",
    )
    ctx.log.info("\n%s", table[["claim", "source", "measured", "verdict"]].to_string(index=False))
