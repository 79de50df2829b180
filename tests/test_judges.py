import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from polneurons.data import IDEOINST as IDEOINST_REPO
from polneurons.data import TOPICS
from polneurons.errors import ConfigError, DataError, IntegrityError, ModelError
from polneurons.judge_classifier import ClassifierJudge, group_split, ideoinst_training_examples
from polneurons.judges import (
    LABELS,
    HFJudge,
    JudgeItem,
    OpenAIJudge,
    Templates,
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
    from polneurons.judge_classifier import judge_pool_records
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
    from polneurons.judge_classifier import group_split

    with pytest.raises(DataError) as error:
        group_split([], 0.2, seed=0)
    assert "data.judge_pairs" in str(error.value) and "\n" not in str(error.value)
    train, test = group_split(["a", "a", "b", "c", "d", "e"], 0.2, seed=0)
    assert len(train) and len(test)


# ---------------------------------------------------------------- the judge abstains

BATTERY = yaml.safe_load((REPO / "tests" / "data" / "stance_free_battery.yaml").read_text())
STANCES = ("left leaning", "right leaning")


def workflow_judge(mirror, **judge_changes):
    """The classifier judge as rule train_judge trains it on the embedded default's pools."""
    from polneurons.config import pool_sizes, validate_config
    from polneurons.judge_classifier import train_classifier_judge
    from polneurons.prompts import topic_pools

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["judge"].setdefault("classifier", {}).update(judge_changes)
    config = validate_config(config)
    sizes, seed = pool_sizes(config), config["seed"]
    pools = {topic: topic_pools(mirror, topic, sizes, seed) for topic in TOPICS}
    cfg = config["judge"]["classifier"]
    return train_classifier_judge(
        pools,
        test_fraction=cfg["test_fraction"],
        seed=seed,
        no_stance_weight=cfg["no_stance_weight"],
    )


def battery_ratings(judge):
    """{kind: ratings} of the stance-free battery, each text rated as a topic answer and as a
    statement answer (the classifier reads the response only: both must agree)."""
    ratings = {}
    for kind, texts in BATTERY.items():
        topical = judge.rate([JudgeItem("race", "race", text) for text in texts])
        general = judge.rate([JudgeItem("pct", None, text) for text in texts])
        assert topical == general
        ratings[kind] = topical
    return ratings


def test_the_stance_free_battery_holds_every_kind_of_answer_without_a_stance():
    kinds = {"refusals", "survey_options", "greetings", "off_topic", "template_fragments", "empty"}
    assert set(BATTERY) == kinds
    assert sum(map(len, BATTERY.values())) >= 40
    assert all(len(texts) >= 3 for texts in BATTERY.values())


def test_the_classifier_judge_abstains_on_text_without_a_stance_and_still_rates_answers(mirror):
    judge = workflow_judge(mirror)
    ratings = battery_ratings(judge)
    every = [rating for kind in ratings.values() for rating in kind]
    stance = [
        (kind, text)
        for kind, texts in BATTERY.items()
        for text, rating in zip(texts, ratings[kind], strict=True)
        if rating in STANCES
    ]
    assert len(stance) <= 0.1 * len(every), stance
    # no answer at all is no answer to rate: an error, as before (S undefined if all are)
    assert set(ratings["empty"]) == {"error"}
    # the rest is rated, or unreadable (no word the judge knows): never a guessed stance
    assert set(every) <= {"neutral", "error", *STANCES}
    assert every.count("neutral") >= 0.6 * len(every)
    # it still rates political answers: the agreement on whole held-out answers of the judge
    # without the stance-free class (accuracy 0.850, kappa 0.753) within 0.01
    agreement = judge.agreement
    assert agreement["accuracy"] >= 0.84 and agreement["kappa"] >= 0.74
    assert agreement["n_stance_free"] > 0
    assert agreement["n_no_stance"] <= 0.1 * agreement["n_test"]
    assert min(agreement["kappa_by_topic"].values()) >= 0.5


def test_without_the_stance_free_class_the_judge_guesses_left_on_the_battery(mirror):
    """The failure the stance-free class removes, kept visible: no_stance_weight 0 is the judge
    of GPT-4's three labels, which calls most text without a stance left leaning."""
    judge = workflow_judge(mirror, no_stance_weight=0)
    every = [rating for kind in battery_ratings(judge).values() for rating in kind]
    assert every.count("left leaning") >= 0.5 * len(every)
    assert judge.agreement["n_stance_free"] == 0 and judge.agreement["n_no_stance"] == 0


def test_stance_free_texts_are_learned_only_from_the_training_side_of_the_split():
    texts, labels, groups = synthetic_corpus()
    free = free_groups = list(dict.fromkeys(groups))  # each instruction once, its own group
    judge = ClassifierJudge()
    agreement = judge.train(
        texts,
        labels,
        groups,
        test_fraction=0.25,
        seed=0,
        stance_free=free,
        stance_free_groups=free_groups,
    )
    train, test = group_split(groups, 0.25, seed=0)
    assert agreement["n_stance_free"] == len({groups[i] for i in train})
    assert agreement["n_test"] == len(test) == len(judge.held_out["texts"])
    assert set(judge.held_out["texts"]) == {texts[i] for i in test}
    assert "no stance" in judge.pipeline[-1].classes_
    # a "no stance" verdict is rated neutral: the judge's ratings stay within LABELS + error
    assert set(judge.rate([JudgeItem("t", "t", f) for f in free])) <= {*LABELS, "error"}


def test_the_judge_refuses_bad_stance_free_input_in_one_line():
    texts, labels, groups = synthetic_corpus()
    bad = [
        (DataError, dict(stance_free=["q1"], stance_free_groups=[])),
        (ConfigError, dict(stance_free=["q1"], stance_free_groups=["q1"], stance_free_weight=-1)),
        (ConfigError, dict(stance_free_weight="high")),
    ]
    for error, options in bad:
        with pytest.raises(error) as raised:
            ClassifierJudge().train(texts, labels, groups, **options)
        assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- agreement on cut answers


def test_answers_are_cut_to_their_first_tokens_as_generation_cuts_them(tokenizer):
    from polneurons.judge_classifier import truncate_to_tokens

    texts = [
        "The model reads the prompt and writes an answer of many words to the question.",
        "Short.",
        "",
    ]
    cut = truncate_to_tokens(texts, tokenizer, 5)
    assert cut[1:] == texts[1:]  # shorter than the cut: whole
    assert texts[0].startswith(cut[0]) and cut[0] != texts[0]
    assert len(tokenizer(cut[0], add_special_tokens=False)["input_ids"]) <= 5
    assert truncate_to_tokens(texts, tokenizer, 1000) == texts
    with pytest.raises(ConfigError) as error:
        truncate_to_tokens(texts, tokenizer, 0)
    assert "generation.max_new_tokens" in str(error.value) and "\n" not in str(error.value)


def test_the_agreement_on_cut_answers_is_measured_on_the_held_out_answers(tmp_path, tokenizer):
    texts, labels, groups = synthetic_corpus()
    judge = ClassifierJudge()
    whole = judge.train(texts, labels, groups, test_fraction=0.25, seed=0)
    uncut = judge.truncated_agreement(tokenizer, 1000)
    assert uncut["n_cut"] == 0 and uncut["max_tokens"] == 1000
    for key in ("accuracy", "kappa", "n_test", "confusion_matrix", "n_no_stance"):
        assert uncut[key] == whole[key]
    cut = judge.truncated_agreement(tokenizer, 2)
    assert cut["n_test"] == whole["n_test"] and cut["n_cut"] > 0
    assert np.sum(cut["confusion_matrix"]) == cut["n_test"]
    path = tmp_path / "judge.joblib"
    judge.save(path)
    assert ClassifierJudge.load(path).truncated_agreement(tokenizer, 2) == cut
    with pytest.raises(ModelError) as error:
        ClassifierJudge(judge.pipeline, whole).truncated_agreement(tokenizer, 2)
    assert "\n" not in str(error.value)


def test_cutting_held_out_answers_short_costs_the_judge_agreement(mirror, tokenizer):
    """On the real pool, the judge agrees less with GPT-4 on answers cut short than whole ones
    (the agreement the judge table reports beside the whole-answer one)."""
    judge = workflow_judge(mirror)
    short = judge.truncated_agreement(tokenizer, 16)
    assert short["n_cut"] > 0.5 * short["n_test"]
    assert short["kappa"] < judge.agreement["kappa"]
    assert short["n_no_stance"] >= judge.agreement["n_no_stance"]
