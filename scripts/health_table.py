"""health_table: generation health of every judged run (tables/generation_health) and sample
answers of each flagged run (tables/generation_health_samples), for the report."""

from polneurons.rule import rule_context
from polneurons.tables.common import write_table
from polneurons.tables.stance import collect_health

out = snakemake.output
with rule_context(snakemake) as ctx:
    table, samples = collect_health(snakemake.input.health)
    write_table(table, out.csv, out.md, title="Generation health per run and test set")
    write_table(
        samples,
        out.samples_csv,
        out.samples_md,
        title="Sample answers of the flagged runs",
    )
    flagged = table.loc[table["flags"] != "", ["run", "test_set", "flags"]]
    ctx.log.info("%d of %d runs flagged", flagged["run"].nunique(), table["run"].nunique())
    if len(flagged):
        ctx.log.info("\n%s", flagged.to_string(index=False))
