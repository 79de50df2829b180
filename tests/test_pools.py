"""Held out means held out: for every config, the data pools of every topic are disjoint
(training, evaluation, log-likelihood pairs, perplexity texts, localization, judge training)."""

from pathlib import Path

import pytest
import yaml

from polneurons.config import pool_sizes, validate_config
from polneurons.data import LEANINGS, TOPICS, load_eval_set
from polneurons.judges import judge_pool_records
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
            "localize": set(pool.localize),
        }
        names = list(by_instruction)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not by_instruction[a] & by_instruction[b], (topic, a, b)
        for held in ("loglik", "judge", "localize"):
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
        assert 0 < len(pool.perplexity) <= sizes["perplexity_texts"]  # as many as are neutral
    assert not judge_texts & trainable
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
