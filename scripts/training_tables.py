"""training_tables: the training loss of every trained run, as a figure and a summary table
(method.md: Fine-tuning)."""

from polneurons.plots import training_loss
from polneurons.rule import rule_context
from polneurons.tables.common import write_table
from polneurons.tables.training import training_steps, training_summary

out = snakemake.output
with rule_context(snakemake) as ctx:
    steps = training_steps(snakemake.input.train)
    summary = training_summary(steps)
    write_table(summary, out.csv, out.md, title="Training: steps, first and final loss")
    training_loss(steps, out.png, out.pdf)
    ctx.log.info("\n%s", summary.round(4).to_string(index=False))
