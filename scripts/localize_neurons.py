"""localize_neurons: r_t per topic from the dumps, then G and S_t (METHOD 6) and the stability of G."""

from pathlib import Path

from polneurons.activations import check_dumps_of_adapter, read_dump, rms_contrast
from polneurons.models import adapter_sha256
from polneurons.neuron_store import save_localization
from polneurons.neurons import bootstrap_stability, localize
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    dumps = dict(zip(p.topics, snakemake.input.dumps, strict=True))
    check_dumps_of_adapter(dumps, adapter_sha256(Path(snakemake.input.adapter) / "adapter"))
    site = read_dump(dumps[p.topics[0]])[0]["site"]
    r_by_topic = {topic: rms_contrast(path) for topic, path in dumps.items()}
    general, specific = localize(r_by_topic, p.k, site=site)
    ctx.log.info(
        "k=%g%%: |G| = %d; |S_t| = %s", p.k, len(general), {t: len(s) for t, s in specific.items()}
    )
    stability = bootstrap_stability(dumps, p.k, p.bootstrap, p.seed) if p.bootstrap else None
    info = {"k": p.k, "site": site, "topics": p.topics, "stability": stability}
    save_localization(snakemake.output.neurons, general, specific, r_by_topic, info)
