"""localize_neurons: r_t per topic from the dumps, then G and S_t (method.md: PNLAC) and the stability of G."""

from pathlib import Path

from polneurons.activations import check_dumps_of_adapter, read_dump, topic_contrast
from polneurons.errors import ConfigError
from polneurons.models import adapter_sha256
from polneurons.neuron_store import save_localization
from polneurons.neurons import bootstrap_stability, localize
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    dumps = dict(zip(p.topics, snakemake.input.dumps, strict=True))
    check_dumps_of_adapter(dumps, adapter_sha256(Path(snakemake.input.adapter) / "adapter"))
    site = read_dump(dumps[p.topics[0]])[0]["site"]
    recipe = p.neurons  # config.localization_recipe
    tokens = {read_dump(path)[0].get("tokens") for path in dumps.values()}
    if tokens != {recipe["tokens"]}:
        raise ConfigError(
            f"the dumps count tokens {sorted(map(str, tokens))}, not neurons.tokens: "
            f"{recipe['tokens']}",
            "delete the dumps folder of this run: they are dumped again",
        )
    r_by_topic = {topic: topic_contrast(path, recipe["contrast"]) for topic, path in dumps.items()}
    general, specific = localize(r_by_topic, p.k, site=site, rank_within=recipe["rank_within"])
    ctx.log.info(
        "k=%g%%: |G| = %d; |S_t| = %s", p.k, len(general), {t: len(s) for t, s in specific.items()}
    )
    stability = (
        bootstrap_stability(
            dumps, p.k, p.bootstrap, p.seed, recipe["contrast"], recipe["rank_within"]
        )
        if p.bootstrap
        else None
    )
    info = {"k": p.k, "site": site, "topics": p.topics, **recipe, "stability": stability}
    save_localization(snakemake.output.neurons, general, specific, r_by_topic, info)
