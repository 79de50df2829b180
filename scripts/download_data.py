"""download_data: fetch the pinned inputs (or copy them from a mirror), verify sha256, write atomically.

Where the files come from (data.mirror, data.base_url) is read from the config, not from the
rule's params: the sha256 pins what they are, so their location is no provenance trigger.
"""

from pathlib import Path

from polneurons.data import FILES, fetch
from polneurons.rule import rule_context

with rule_context(snakemake) as ctx:
    source = snakemake.config["data"]
    mirror, base_url = source["mirror"], source["base_url"]
    ctx.log.info("source: %s", mirror or base_url)
    for rel, dest in zip(FILES, snakemake.output.files, strict=True):
        fetch(rel, Path(dest), base_url, mirror)
        ctx.log.info("verified %s", rel)
