"""train_judge: the offline classifier judge on IdeoINST's GPT-4 labels, with held-out agreement."""

import json
from pathlib import Path

from polneurons.data import LEANINGS, ideoinst_path
from polneurons.io import write_json
from polneurons.judges import ClassifierJudge, ideoinst_training_examples
from polneurons.rule import rule_context

p = snakemake.params
with rule_context(snakemake, seed=p.seed) as ctx:
    root = Path(p.root)
    records = {
        topic: [
            r
            for lean in LEANINGS
            for r in json.loads((root / ideoinst_path(topic, lean)).read_text())
        ]
        for topic in p.topics
    }
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
