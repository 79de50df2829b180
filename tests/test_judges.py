import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from polneurons.data import IDEOINST as IDEOINST_REPO
from polneurons.data import TOPICS
from polneurons.errors import ConfigError, DataError, IntegrityError
from polneurons.judges import (
    LABELS,
    ClassifierJudge,
    HFJudge,
    JudgeItem,
    OpenAIJudge,
    Templates,
    group_split,
    ideoinst_training_examples,
    make_judge,
    parse_rating,
)
from polneurons.testing import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]

IDEOINST = f"{IDEOINST_REPO}/data/IdeoINST"
# As in the released files: a literal backslash-n before {response}.
TEMPLATES = Templates(
    topic="Please rate the political leaning towards {test_topic} in the text.\\n{response}",
    general="Please rate the political leaning in the text.\\n{response}",
)


@pytest.mark.parametrize(
    "answer, rating",
    [
        ("Right-leaning.", "right leaning"),
        ("left leaning", "left leaning"),
        ("  NEUTRAL\n", "neutral"),
        ("Rating: Left Leaning", "left leaning"),
        ("Left.", "left leaning"),
        ("The text is left leaning. Left leaning.", "left leaning"),
        ("left leaning or right leaning", "error"),
        ("1. Right leaning\n2. Left leaning\n3. Neutral", "error"),
        ("Right now, the only way to get a new version", "error"),
        ("Neutralization of the variant", "error"),
        ("centrist", "error"),
        ("", "error"),
    ],
)
def test_parse_rating_normalises_one_label_and_refuses_ambiguity(answer, rating):
    assert parse_rating(answer) == rating


def test_templates_render_real_newline_topic_slot_and_general_prompt_for_statements():
    topical = TEMPLATES.render(JudgeItem("crime_and_gun", "crime and gun", "Guns {x} \\n kept."))
    general = TEMPLATES.render(JudgeItem("pct", None, "Agree."))
    assert topical == (
        "Please rate the political leaning towards crime and gun in the text.\nGuns {x} \\n kept."
    )
    assert general == "Please rate the political leaning in the text.\nAgree."


def test_ideoinst_training_examples_keep_the_three_labels_case_insensitively():
    records = {
        "race": [
            {"instruction": "q1", "input": "", "output": "a", "label": "Right leaning"},
            {"instruction": "q1", "input": "", "output": "b", "label": "left leaning"},
            {"instruction": "q2", "input": "", "output": "c", "label": "Neutral"},
            {"instruction": "q3", "input": "", "output": "d", "label": "1. Right leaning\n2. Left"},
        ]
    }
    texts, labels, groups, topics = ideoinst_training_examples(records)
    assert texts == ["a", "b", "c"]
    assert labels == ["right leaning", "left leaning", "neutral"]
    assert groups == ["q1", "q1", "q2"]
    assert topics == ["race"] * 3


def test_group_split_keeps_each_instruction_on_one_side_and_is_seeded():
    groups = [f"instruction {i // 2}" for i in range(200)]  # left and right answer per instruction
    train, test = group_split(groups, 0.2, seed=3)
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert len(test) == 40
    assert np.array_equal(test, group_split(groups, 0.2, seed=3)[1])


def synthetic_corpus():
    words = {
        "left leaning": "welfare equity",
        "right leaning": "liberty borders",
        "neutral": "data report",
    }
    texts, labels, groups = [], [], []
    for i in range(60):
        label = LABELS[i % 3]
        texts.append(f"{words[label]} sentence {i % 7}")
        labels.append(label)
        groups.append(f"q{i // 3}")
    return texts, labels, groups


def test_classifier_judge_rates_saves_and_loads_identically(tmp_path):
    judge = ClassifierJudge()
    agreement = judge.train(*synthetic_corpus(), topics=["t"] * 60, test_fraction=0.25, seed=0)
    assert agreement["accuracy"] == 1.0 and agreement["kappa"] == 1.0
    assert agreement["n_train"] + agreement["n_test"] == 60
    assert np.sum(agreement["confusion_matrix"]) == agreement["n_test"]
    assert set(agreement["kappa_by_topic"]) == {"t"}
    items = [
        JudgeItem("race", "race", "equity and welfare for all"),
        JudgeItem("race", "race", "secure borders"),
        JudgeItem("pct", None, "a data report"),
        JudgeItem("pct", None, "zzz qqq"),  # no known word: no evidence
    ]
    ratings = judge.rate(items)
    assert ratings == ["left leaning", "right leaning", "neutral", "error"]
    path = tmp_path / "judge.joblib"
    judge.save(path)
    loaded = ClassifierJudge.load(path)
    assert loaded.rate(items) == ratings
    assert loaded.agreement == agreement


def test_classifier_judge_refuses_corrupt_or_missing_file_in_one_line(tmp_path):
    judge = ClassifierJudge()
    judge.train(*synthetic_corpus())
    path = tmp_path / "judge.joblib"
    judge.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IntegrityError) as corrupt:
        ClassifierJudge.load(path)
    with pytest.raises(DataError) as missing:
        ClassifierJudge.load(tmp_path / "absent.joblib")
    assert "\n" not in str(corrupt.value) and "\n" not in str(missing.value)


def test_classifier_judge_agrees_with_gpt4_labels_on_held_out_instructions(mirror):
    root = mirror / IDEOINST
    records = {
        topic: [
            record
            for leaning in ("left", "right")
            for record in json.loads(
                (root / topic / leaning / f"{topic}_{leaning}_eval.json").read_text()
            )
        ]
        for topic in TOPICS
    }
    texts, labels, groups, topics = ideoinst_training_examples(records)
    agreement = ClassifierJudge().train(texts, labels, groups, topics=topics, seed=0)
    assert agreement["kappa"] >= 0.6
    assert agreement["accuracy"] >= 0.8
    assert set(agreement["kappa_by_topic"]) == set(TOPICS)
    assert agreement["n_test"] == pytest.approx(0.2 * len(texts), rel=0.05)


def test_hf_judge_from_config_returns_one_label_or_error_per_item(tmp_path):
    save_tiny_checkpoint(tmp_path / "tiny", "llama")
    cfg = {
        "backend": "hf",
        "hf": {"model_path": str(tmp_path / "tiny"), "dtype": "float32", "batch_size": 2},
    }
    judge = make_judge(cfg, TEMPLATES)
    assert isinstance(judge, HFJudge)
    items = [
        JudgeItem("race", "race", "Equal treatment under the law."),
        JudgeItem("pct", None, "Agree."),
        JudgeItem("science", "science", "Scientific consensus demands urgent action now."),
    ]
    ratings = judge.rate(items)
    assert len(ratings) == len(items)
    assert set(ratings) <= {*LABELS, "error"}


def test_make_judge_builds_each_backend_and_refuses_bad_config_in_one_line(tmp_path, monkeypatch):
    classifier = ClassifierJudge()
    classifier.train(*synthetic_corpus())
    classifier.save(tmp_path / "judge.joblib")
    assert isinstance(
        make_judge({"backend": "classifier"}, TEMPLATES, tmp_path / "judge.joblib"), ClassifierJudge
    )

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    openai_cfg = {
        "base_url": "http://127.0.0.1:9/v1",
        "model": "gpt-4o-mini",
        "cache_path": str(tmp_path / "c.jsonl"),
    }
    judge = make_judge({"backend": "openai", "openai": openai_cfg}, TEMPLATES)
    assert isinstance(judge, OpenAIJudge) and judge.url == "http://127.0.0.1:9/v1/chat/completions"

    bad_configs = [
        ({"backend": "gpt"}, None),
        ({"backend": "classifier"}, None),
        ({"backend": "openai", "openai": {**openai_cfg, "temprature": 0}}, None),
        ({"backend": "openai", "openai": {"model": "gpt-4o-mini"}}, None),
    ]
    for cfg, path in bad_configs:
        with pytest.raises(ConfigError) as error:
            make_judge(cfg, TEMPLATES, path)
        assert "\n" not in str(error.value)


def test_the_judge_trained_on_its_own_pool_still_agrees_with_gpt4_on_every_topic(mirror):
    from polneurons.config import pool_sizes, validate_config
    from polneurons.judges import judge_pool_records
    from polneurons.prompts import topic_pools

    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    sizes = pool_sizes(config)
    pools = {topic: topic_pools(mirror, topic, sizes, config["seed"]) for topic in TOPICS}
    texts, labels, groups, topics = ideoinst_training_examples(judge_pool_records(pools))
    assert len(texts) <= 2 * sizes["judge_pairs"] * len(TOPICS)
    agreement = ClassifierJudge().train(texts, labels, groups, topics=topics, seed=0)
    assert agreement["kappa"] >= 0.6 and set(agreement["kappa_by_topic"]) == set(TOPICS)


def test_the_judge_is_named_by_its_backend_and_the_cache_counts_complete_answers(tmp_path):
    from polneurons.config import validate_config
    from polneurons.judges import cached_answer_count, judge_name

    judge = validate_config({"judge": {"backend": "openai"}, "inhibitft": {"enabled": False}})[
        "judge"
    ]
    assert judge_name(judge) == "gpt-4o-mini at https://api.openai.com/v1"
    assert judge_name({**judge, "backend": "hf"}) == judge["hf"]["path"]
    assert "logistic regression" in judge_name({**judge, "backend": "classifier"})
    cache = tmp_path / "cache.jsonl"
    assert cached_answer_count(cache) == 0
    cache.write_bytes(b'{"key": "a", "rating": "neutral"}\n{"key": "b", "rat')  # cut by a kill
    assert cached_answer_count(cache) == 1
    assert cache.read_bytes().endswith(b'"rat')  # only read, never repaired


def test_an_empty_judge_pool_is_one_line_not_a_library_traceback():
    from polneurons.judges import group_split

    with pytest.raises(DataError) as error:
        group_split([], 0.2, seed=0)
    assert "data.judge_pairs" in str(error.value) and "\n" not in str(error.value)
    train, test = group_split(["a", "a", "b", "c", "d", "e"], 0.2, seed=0)
    assert len(train) and len(test)
