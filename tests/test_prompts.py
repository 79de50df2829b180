"""Prompt templates: the authors' slots, bare and chat formats (method.md: Stance)."""

import pytest

from polneurons.data import topic_name
from polneurons.errors import ConfigError
from polneurons.judges import JudgeItem, Templates
from polneurons.prompts import adds_special_tokens, answer_prompt, load_templates, render

TEMPLATES = {
    "answer_prompt": "On {}: lean on {}. Instruction: {}",
    "answer_prompt2": "Statement: {} Agree/Disagree",
}


def test_topic_template_fills_topic_twice_then_instruction():
    text = answer_prompt(TEMPLATES, "crime_and_gun", "Should guns be banned?", "spaced")
    assert text == "On crime and gun: lean on crime and gun. Instruction: Should guns be banned?"


def test_as_released_topic_names_are_the_snake_case_names_the_authors_passed():
    text = answer_prompt(TEMPLATES, "crime_and_gun", "Should guns be banned?", "as_released")
    assert text == "On crime_and_gun: lean on crime_and_gun. Instruction: Should guns be banned?"
    assert topic_name("gender_and_sexuality", "as_released") == "gender_and_sexuality"
    assert topic_name("gender_and_sexuality", "spaced") == "gender and sexuality"
    with pytest.raises(ConfigError, match="prompt_topic_names"):
        topic_name("race", "Title Case")


def test_judge_template_gets_the_topic_as_the_config_writes_it():
    templates = Templates(topic="Topic: {test_topic}\\nAnswer: {response}", general="{response}")
    for style, written in (("as_released", "crime_and_gun"), ("spaced", "crime and gun")):
        item = JudgeItem("crime_and_gun", topic_name("crime_and_gun", style), "Ban them.")
        assert templates.render(item) == f"Topic: {written}\nAnswer: Ban them."


def test_pct_and_questionnaire_use_the_statement_template():
    for style in ("as_released", "spaced"):
        assert answer_prompt(TEMPLATES, "pct", "X", style) == "Statement: X Agree/Disagree"
        assert (
            answer_prompt(TEMPLATES, "questionnaire", "Y", style) == "Statement: Y Agree/Disagree"
        )


def test_real_templates_have_the_documented_slots(mirror):
    templates = load_templates(mirror)
    assert templates["answer_prompt"].count("{}") == 3
    assert templates["answer_prompt2"].count("{}") == 1
    assert "{response}" in templates["prompt_evaluation"]
    assert "{test_topic}" in templates["prompt_evaluation"]


def test_chat_format_wraps_one_user_turn_and_bare_is_unchanged(tokenizer):
    assert render(tokenizer, "hello", "bare") == "hello"
    chat = render(tokenizer, "hello", "chat")
    assert "user: hello" in chat and chat.endswith("assistant:")
    assert adds_special_tokens("bare") and not adds_special_tokens("chat")


def test_chat_format_without_a_chat_template_is_refused(tokenizer):
    import copy

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(ConfigError, match="chat template"):
        render(plain, "hello", "chat")
