"""train_judge: the offline classifier judge on IdeoINST's GPT-4 labels of its own data pool
(no fine-tune trains on it), with held-out agreement per topic."""

from polneurons.io import write_json
from polneurons.judges import ClassifierJudge, ideoinst_training_examples, judge_pool_records
from polneurons.prompts import topic_pools
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    pools = {topic: topic_pools(p.root, topic, p.pools, p.seed) for topic in p.topics}
    records = judge_pool_records(pools)
    texts, labels, groups, topics = ideoinst_training_examples(records)
    judge = ClassifierJudge()
    agreement = judge.train(
        texts, labels, groups, topics, test_fraction=p.test_fraction, seed=p.seed
    )
    ctx.log.info(
        "held-out agreement with GPT-4: accuracy %.3f, kappa %.3f",
        agreement["accuracy"],
        agreement["kappa"],
    )
    judge.save(snakemake.output.model)
    write_json(snakemake.output.agreement, agreement)
