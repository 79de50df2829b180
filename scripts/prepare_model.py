"""prepare_model: resolve a hub id, local folder or bundled GGUF to a checkpoint and record it."""

from pathlib import Path

from polneurons.models import prepare_model
from polneurons.rule import rule_context

with rule_context(snakemake) as ctx:
    record = prepare_model(snakemake.params.spec, Path(snakemake.output.record).parent)
    ctx.log.info("model %s -> %s (%s)", record["source"], record["path"], record["model_type"])
