"""download_data: fetch the pinned inputs (or copy them from a mirror), verify sha256, write atomically."""

from pathlib import Path

from polneurons.data import FILES, fetch
from polneurons.rule import rule_context

with rule_context(snakemake) as ctx:
    mirror = snakemake.params.mirror
    ctx.log.info("source: %s", mirror or snakemake.params.base_url)
    for rel, dest in zip(FILES, snakemake.output.files, strict=True):
        fetch(rel, Path(dest), snakemake.params.base_url, mirror)
        ctx.log.info("verified %s", rel)
