"""train_judge: the offline classifier judge on IdeoINST's GPT-4 labels of its own data pool
(no fine-tune trains on it) and on the pool's instructions as stance-free text, with held-out
agreement per topic."""

from polneurons.io import write_json
from polneurons.judge_classifier import train_classifier_judge
from polneurons.prompts import topic_pools
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    pools = {topic: topic_pools(p.root, topic, p.pools, p.seed) for topic in p.topics}
    judge = train_classifier_judge(
        pools, test_fraction=p.test_fraction, seed=p.seed, no_stance_weight=p.no_stance_weight
    )
    agreement = judge.agreement
    ctx.log.info(
        "held-out agreement with GPT-4: accuracy %.3f, kappa %.3f (%d of %d answers rated "
        "stance-free); trained on %d answers and %d stance-free instructions",
        agreement["accuracy"],
        agreement["kappa"],
        agreement["n_no_stance"],
        agreement["n_test"],
        agreement["n_train"],
        agreement["n_stance_free"],
    )
    judge.save(snakemake.output.model)
    write_json(snakemake.output.agreement, agreement)
