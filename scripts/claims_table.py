"""claims_table: each claim of the paper, its figure, each control's figure and a verdict from a
rule stated in the table (method.md: The claims under test)."""

from polneurons.rule import rule_context
from polneurons.tables.claims import TABLE_FILES, claims_table
from polneurons.tables.common import read_table, write_table

p, inp = snakemake.params, snakemake.input

with rule_context(snakemake) as ctx:
    # the inputs are the tables the registered claims read (plan.Plan.claim_tables)
    tables = {name: read_table(inp[name]) for name in TABLE_FILES if name in inp.keys()}
    table = claims_table(tables, headline_n=p.headline_n, ts_kept_margin=p.ts_kept_margin).assign(
        recipe=p.recipe
    )
    write_table(
        table,
        snakemake.output.csv,
        snakemake.output.md,
        title=f"The paper's claims, measured (PNLAC recipe {p.recipe})",
    )
    ctx.log.info("\n%s", table[["claim", "source", "measured", "verdict"]].to_string(index=False))
