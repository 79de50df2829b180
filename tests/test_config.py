"""Config schema: defaults are the paper's, presets validate, semantics are checked at parse time."""

from pathlib import Path

import pytest
import yaml

from polneurons.config import data_settings, inhibitft_finetune, validate_config
from polneurons.errors import ConfigError
from polneurons.runs import control_draws, random_control_at

REPO = Path(__file__).resolve().parents[1]


def _with_mlp_targets(cfg: dict) -> dict:
    """The paper's defaults plus MLP targets for InhibitFT (else its q/v LoRA is refused)."""
    return {**cfg, "inhibitft": {"finetune": {"lora": {"target_modules": ["down_proj"]}}}}


def test_empty_config_gets_the_papers_defaults():
    cfg = validate_config({"inhibitft": {"finetune": {"lora": {"target_modules": ["down_proj"]}}}})
    assert cfg["finetune"]["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"],
    }
    assert cfg["finetune"]["lr"] == 2e-5 and cfg["finetune"]["epochs"] == 6
    assert cfg["generation"]["max_new_tokens"] == 150
    assert cfg["neurons"] == {**cfg["neurons"], "k": 30, "site": "mlp_output"}
    assert cfg["inhibitft"]["n"] == [5]
    assert cfg["judge"]["openai"]["model"] == "gpt-4o-mini"


def test_paper_defaults_alone_are_refused_because_qv_lora_cannot_inhibit():
    with pytest.raises(ConfigError, match="InhibitFT cannot act"):
        validate_config({})


@pytest.mark.parametrize(
    "name", ["config.yaml", "configs/paper.yaml", "tests/workflow/configs/tiny.yaml"]
)
def test_shipped_configs_validate(name):
    cfg = yaml.safe_load((REPO / name).read_text())
    if name.startswith("tests"):
        cfg["model_registry"]["tiny"]["path"] = "tiny-model-id"
    validate_config(cfg)


def test_inhibitft_overrides_merge_into_the_lora_subtree():
    cfg = validate_config(yaml.safe_load((REPO / "configs/paper.yaml").read_text()))
    merged = inhibitft_finetune(cfg)
    assert merged["lora"]["target_modules"] == [
        "q_proj",
        "v_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert merged["lora"]["r"] == 16 and merged["lr"] == cfg["finetune"]["lr"]
    assert cfg["finetune"]["lora"]["target_modules"] == ["q_proj", "v_proj"]


def test_errors_name_the_key_in_one_line():
    with pytest.raises(ConfigError) as err:
        validate_config({"neurons": {"k": 150}, "inhibitft": {"enabled": False}})
    assert "neurons.k" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("control", "expected"),
    [(True, {5: True, 15: True}), (False, {5: False, 15: False}), ([15], {5: False, 15: True})],
)
def test_random_control_is_every_n_no_n_or_the_listed_n(control, expected):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["inhibitft"].update(n=[5, 15], random_control=control)
    ift = validate_config(cfg)["inhibitft"]
    assert {n: random_control_at(ift, n) for n in (5, 15)} == expected


def test_command_line_strings_under_either_form_of_a_control_key_read_as_the_schema_wants():
    # snakemake reads --config 'inhibitft={random_control: true, n: [5, 15]}' as strings
    cfg = yaml.safe_load((REPO / "config.yaml").read_text()) | {"null_finetune": "true"}
    cfg["inhibitft"].update(n=["5", "15"], random_control="true", null_control=["15"])
    ift = validate_config(cfg)["inhibitft"]
    assert ift["random_control"] is True and ift["null_control"] == [15] and ift["n"] == [5, 15]
    cfg["inhibitft"].update(n=[5, 15], random_control="7")
    with pytest.raises(ConfigError, match="inhibitft.random_control"):
        validate_config(cfg)


@pytest.mark.parametrize(
    ("control", "words"),
    [([7], "not among inhibitft.n"), ("sometimes", "true or false or a list"), ([], "at least 1")],
)
def test_random_control_outside_the_sweep_or_malformed_is_refused_in_one_line(control, words):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["inhibitft"].update(n=[5, 15], random_control=control)
    with pytest.raises(ConfigError, match=words) as err:
        validate_config(cfg)
    assert "inhibitft.random_control" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("stage", ["inhibitft", "patching"])
def test_a_stage_source_topic_without_its_vanilla_run_is_refused(stage):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg[stage]["source_topics"] = ["race"]
    with pytest.raises(ConfigError, match=f"{stage}.source_topics \\['race'\\] are not among"):
        validate_config(cfg)


def test_random_controls_default_to_three_draws_and_the_embedded_default_to_one():
    assert validate_config(_with_mlp_targets({}))["controls"]["seeds"] == 3
    embedded = yaml.safe_load((REPO / "config.yaml").read_text())
    assert embedded["controls"]["seeds"] == 1
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    assert validate_config(paper)["controls"]["seeds"] == 3
    assert control_draws(validate_config(paper)) == [0, 1, 2]


def test_prompt_topic_names_default_to_spaced_and_the_paper_uses_the_released_names():
    assert validate_config(_with_mlp_targets({}))["prompt_topic_names"] == "spaced"
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    assert validate_config(paper)["prompt_topic_names"] == "as_released"
    with pytest.raises(ConfigError, match="prompt_topic_names") as err:
        validate_config(_with_mlp_targets({"prompt_topic_names": "Title"}))
    assert "\n" not in str(err.value)


def test_where_the_data_come_from_is_no_result_setting():
    data = validate_config(_with_mlp_targets({}))["data"]
    kept = data_settings(data)
    assert "mirror" not in kept and "base_url" not in kept
    assert kept == {k: v for k, v in data.items() if k not in ("mirror", "base_url")}


def test_the_specificity_test_without_the_specific_condition_is_refused_in_one_line():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["patching"]["conditions"] = ["general", "crossed"]
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "crossed" in str(err.value) and "specific" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("weight", [0, -0.5])
def test_a_non_positive_anchor_weight_is_refused_in_one_line_naming_the_key(weight):
    cfg = _with_mlp_targets({})
    cfg["inhibitft"] |= {"strategies": ["anchor"], "anchor_weight": weight}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "inhibitft.anchor_weight" in str(err.value) and "\n" not in str(err.value)


def test_anchor_with_full_fine_tuning_is_refused_in_one_line():
    cfg = _with_mlp_targets({})
    cfg["inhibitft"] |= {"strategies": ["anchor"], "finetune": {"method": "full"}}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "anchor needs LoRA" in str(err.value) and "\n" not in str(err.value)
    assert "inhibitft.finetune.method: lora" in str(err.value)
    cfg["inhibitft"]["finetune"] = {"lora": {"target_modules": ["q_proj", "v_proj"]}}
    assert validate_config(cfg)["inhibitft"]["anchor_weight"] > 0  # q/v LoRA is upstream


def test_an_empty_f_n_is_refused_at_parse_time_naming_the_key():
    # F_n is the top n% of G, at least one neuron for any n > 0 (neurons.top_fraction): an
    # empty F_n can only be asked for with n = 0, which the schema refuses in one line
    cfg = _with_mlp_targets({})
    cfg["inhibitft"] |= {"strategies": ["anchor"], "n": [0]}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "inhibitft.n" in str(err.value) and "\n" not in str(err.value)
