"""Held out means held out: for every config, the data pools of every topic are disjoint
(training, evaluation, log-likelihood pairs, perplexity texts, localization, judge training,
the teacher-forced readout)."""

from pathlib import Path

import pytest
import yaml

from polneurons.config import pool_sizes, validate_config
from polneurons.data import LEANINGS, TOPICS, load_eval_set
from polneurons.errors import DataError
from polneurons.judge_classifier import judge_pool_records, stance_free_examples
from polneurons.prompts import eval_items, localize_items, topic_pools

REPO = Path(__file__).resolve().parents[1]


def _config(path, **changes):
    raw = yaml.safe_load((REPO / path).read_text())
    for spec in raw.get("model_registry", {}).values():
        spec["path"] = str(REPO) if spec["path"].startswith("/") else spec["path"]
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    return validate_config(raw)


CONFIGS = {
    "embedded": ("config.yaml", {}),
    "paper": ("configs/paper.yaml", {}),
    "tiny": ("tests/workflow/configs/tiny.yaml", {}),
    "paper, classifier judge, held-out localization": (
        "configs/paper.yaml",
        {"judge.backend": "classifier", "neurons.localize_prompts": "held_out"},
    ),
    "paper, no patching (no readout pool)": ("configs/paper.yaml", {"patching.enabled": False}),
    "cpu-study (100 readout pairs per topic)": ("configs/cpu-study.yaml", {}),
    "embedded, evaluation kept in training, 50 prompts": (
        "config.yaml",
        {"data.holdout_eval": False, "data.eval_prompts": 50, "data.judge_pairs": 120},
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_pool_of_every_topic_is_disjoint_from_the_others(mirror, name):
    path, changes = CONFIGS[name]
    config = _config(path, **changes)
    sizes, seed = pool_sizes(config), config["seed"]
    limit = config["data"]["eval_prompts"]
    pools = {topic: topic_pools(mirror, topic, sizes, seed) for topic in TOPICS}
    # every answer any fine-tune of this config could train on (the whole training pools)
    trainable = {p.answer(lean) for pool in pools.values() for p in pool.train for lean in LEANINGS}
    judge_texts = {r["output"] for rows in judge_pool_records(pools).values() for r in rows}
    for topic, pool in pools.items():
        evaluation = {it["text"] for it in eval_items(mirror, [topic], limit)}
        every_eval = set(load_eval_set(mirror, topic))
        localization = {it["text"] for it in localize_items(mirror, topic, sizes, seed, limit)}
        by_instruction = {
            "train": {p.instruction for p in pool.train},
            "loglik": {p.instruction for p in pool.loglik},
            "judge": {p.instruction for p in pool.judge},
            "readout": {p.instruction for p in pool.readout},
            "localize": set(pool.localize),
        }
        names = list(by_instruction)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not by_instruction[a] & by_instruction[b], (topic, a, b)
        for held in ("loglik", "judge", "readout", "localize"):
            assert not by_instruction[held] & every_eval, (topic, held)
        if config["data"]["holdout_eval"]:
            assert not by_instruction["train"] & evaluation and not pool.leaks
        else:  # the paper's leak, kept for fidelity: named, never silent
            assert evaluation <= by_instruction["train"] and pool.leaks
        assert not set(pool.perplexity) & trainable, topic
        if config["neurons"]["localize_prompts"] == "held_out":
            assert localization == set(pool.localize) and not localization & every_eval
            assert len(localization) == (limit or 100)
        else:
            assert localization == evaluation  # the paper: localized on the evaluation prompts
        assert len(pool.loglik) == sizes["loglik_pairs"]
        assert len(pool.readout) == sizes["readout_pairs"]
        readout_answers = {p.answer(lean) for p in pool.readout for lean in LEANINGS}
        assert not readout_answers & trainable and not readout_answers & judge_texts
        assert 0 < len(pool.perplexity) <= sizes["perplexity_texts"]  # as many as are neutral
    assert not judge_texts & trainable
    # the judge's stance-free class is its own pool's instructions: in no other pool
    stance_free = set(stance_free_examples(pools)[0])
    judge_instructions = {p.instruction for pool in pools.values() for p in pool.judge}
    others = {
        text
        for topic, pool in pools.items()
        for text in (
            *(p.instruction for p in (*pool.train, *pool.loglik)),
            *pool.localize,
            *load_eval_set(mirror, topic),
        )
    }
    assert stance_free <= judge_instructions and not stance_free & others
    if config["judge"]["backend"] == "classifier":
        assert len(judge_texts) > 0
    else:
        assert not judge_texts  # nothing held out for a judge that is not trained


def test_the_pools_do_not_depend_on_which_rule_asks():
    """One function, one param: every rule that reads a pool gets POOLS = pool_sizes(config)."""
    rules_dir = REPO / "workflow" / "rules"
    common = (rules_dir / "common.smk").read_text()
    assert "POOLS = pool_sizes(config)" in common
    train_params = common[common.index("TRAIN_PARAMS = dict(") :].split("\n\n")[0]
    assert "pools=POOLS" in train_params
    text = "\n".join(p.read_text() for p in rules_dir.glob("*.smk"))
    blocks = {b.split(":")[0]: b for b in text.split("\nrule ")[1:]}
    for rule in ("finetune", "inhibitft", "score_likelihood", "dump_activations", "train_judge"):
        assert "pools=POOLS" in blocks[rule] or "**TRAIN_PARAMS" in blocks[rule], rule
    for script in ("finetune", "score_likelihood", "dump_activations", "train_judge"):
        assert "p.pools" in (REPO / "scripts" / f"{script}.py").read_text(), script


def test_the_null_fine_tune_trains_only_on_neutral_answers_of_the_training_pool(mirror):
    from polneurons.data import Pair, TopicPools, null_examples, training_examples

    config = _config("config.yaml")
    sizes, seed = pool_sizes(config), config["seed"]
    pools = {topic: topic_pools(mirror, topic, sizes, seed) for topic in TOPICS}
    for topic in config["source_topics"]:
        count = len(
            training_examples(
                pools[topic],
                "right",
                n_examples=config["data"]["train_examples"],
                label_filter=config["data"]["label_filter"],
                seed=seed,
            )
        )
        examples, source = null_examples(pools, topic, count, seed)
        assert len(examples) == count and source == "topic"
        neutral = {
            (p.instruction, p.left if p.left_label == "neutral" else p.right)
            for p in pools[topic].train
            if "neutral" in (p.left_label, p.right_label)
        }
        assert set(examples) <= neutral
        assert not {answer for _, answer in examples} & set(pools[topic].perplexity)

    # a topic with too few neutral answers of its own pools those of every topic, and says so
    def pair(topic, i, label):
        return Pair(
            topic, i, f"{topic} {i}?", f"L{topic}{i}", f"R{topic}{i}", label, "right leaning"
        )

    def split(topic, labels):
        return TopicPools([pair(topic, i, lab) for i, lab in enumerate(labels)], [], [], [], [])

    few = {"a": split("a", ["neutral", "left leaning"]), "b": split("b", ["neutral"] * 3)}
    examples, source = null_examples(few, "a", 3, seed=0)
    assert source == "pooled" and {a for _, a in examples} <= {"La0", "Lb0", "Lb1", "Lb2"}
    with pytest.raises(DataError, match="neutral"):
        null_examples(few, "a", 5, seed=0)


def test_without_a_readout_every_pool_is_what_it_was_before_the_readout(mirror):
    """The readout pool is cut after every other pool: with none, each pool is the same pairs
    as a cut that knows nothing of it; with one, only the training pool gives them up."""
    from polneurons.data import load_pairs
    from polneurons.data import topic_pools as cut

    config = _config("config.yaml")
    sizes, seed = pool_sizes(config), config["seed"]
    for topic in ("crime_and_gun", "economy_and_inequality"):
        pairs, evals = load_pairs(mirror, topic), load_eval_set(mirror, topic)
        without = {key: value for key, value in sizes.items() if key != "readout_pairs"}
        before = cut(pairs, evals, sizes={**without, "readout_pairs": 0}, seed=seed)
        after = topic_pools(mirror, topic, sizes, seed)
        for name in ("loglik", "perplexity", "localize", "judge"):
            assert getattr(after, name) == getattr(before, name), (topic, name)
        assert not before.readout and len(after.readout) == sizes["readout_pairs"]
        taken = {p.index for p in after.readout}
        assert [p for p in before.train if p.index not in taken] == after.train
