"""Bad inputs: each gives ONE line naming the problem and its fix, never a traceback (issue 7).

Most cases call the validators and loaders directly; a few go through the real command line
(`snakemake -n`, a rule job, a rule-like script) to check what the user actually sees.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from workflow_helpers import (
    TINY_CONFIG,
    assert_one_line_error,
    build_tiny_checkpoint,
    make_workdir,
    require_mirror,
    subprocess_env,
)

from polneurons import data
from polneurons.config import validate_config
from polneurons.errors import (
    ConfigError,
    DataError,
    EnvironmentProblem,
    IntegrityError,
    ModelError,
    PolneuronsError,
)


def one_line(exc: PolneuronsError, *words: str) -> str:
    """The error's message: one line, 'problem -- fix: how', naming every word given."""
    message = str(exc)
    assert "\n" not in message, message
    assert " -- fix: " in message, message
    problem, fix = message.split(" -- fix: ", 1)
    assert problem.strip() and fix.strip(), message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def tiny_config():
    """The tiny test config (valid as it is) with a hub-id model path, so no folder is checked."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["model_registry"]["tiny"]["path"] = "some-org/some-model"
    return cfg


def refused(cfg: dict, *words: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return one_line(err.value, *words)


# ---------------------------------------------------------------- configuration


def test_the_tiny_config_itself_is_valid(tiny_config):
    assert validate_config(tiny_config)["neurons"]["k"] == 30


def test_unknown_top_level_key_is_refused_with_the_known_keys(tiny_config):
    tiny_config["colour"] = "blue"
    refused(tiny_config, "'colour'", "top level", "remove 'colour'", "known keys", "topics")


def test_misspelt_nested_key_suggests_the_right_name(tiny_config):
    tiny_config["finetune"]["learning_rate"] = 1e-3
    tiny_config["finetune"]["lrr"] = 1e-3
    refused(
        tiny_config, "finetune", "rename 'lrr' to 'lr'", "remove 'learning_rate'", "warmup_steps"
    )


def test_unknown_key_in_the_inhibitft_overrides_is_refused(tiny_config):
    tiny_config["inhibitft"]["finetune"] = {"epoch": 2}
    refused(tiny_config, "inhibitft.finetune", "rename 'epoch' to 'epochs'")


def test_wrong_type_names_the_key_and_the_expected_type(tiny_config):
    tiny_config["finetune"]["lr"] = "fast"
    refused(tiny_config, "finetune.lr", "'fast'", "a number > 0")


def test_a_single_topic_string_instead_of_a_list_is_refused(tiny_config):
    tiny_config["topics"] = "race"
    refused(tiny_config, "topics", "a list")


def test_wrong_type_inside_the_inhibitft_overrides_is_refused(tiny_config):
    tiny_config["inhibitft"]["finetune"] = {"lora": {"target_modules": "down_proj"}}
    refused(tiny_config, "inhibitft.finetune.lora.target_modules", "a list")


def test_empty_topic_list_is_refused(tiny_config):
    tiny_config["topics"] = []
    refused(tiny_config, "topics", "at least 2")


def test_unknown_topic_lists_the_topics(tiny_config):
    tiny_config["topics"] = ["crime_and_gun", "sports"]
    refused(tiny_config, "'sports'", "crime_and_gun", "gender_and_sexuality")


def test_model_missing_from_the_registry_lists_the_registered_ones(tiny_config):
    tiny_config["models"] = ["gpt5"]
    refused(tiny_config, "gpt5", "model_registry", "tiny")


def test_registry_entry_without_a_path_is_refused(tiny_config):
    tiny_config["model_registry"]["tiny"] = {"params_b": 1}
    refused(tiny_config, "model_registry.tiny", "path")


def test_unknown_judge_backend_lists_the_backends(tiny_config):
    tiny_config["judge"] = {"backend": "gpt4"}
    refused(tiny_config, "judge.backend", "classifier", "openai", "hf")


@pytest.mark.parametrize("backend", ["classifier", "openai"])
def test_held_out_pools_that_leave_no_training_pool_are_refused_naming_the_keys(
    tiny_config, backend
):
    from polneurons.data import PAIRS_OUTSIDE_EVAL

    tiny_config["judge"] = {"backend": backend}
    tiny_config["data"]["loglik_pairs"] = min(PAIRS_OUTSIDE_EVAL.values())
    refused(tiny_config, "data.loglik_pairs", "no training pool", "pairs outside the evaluation")


def test_the_judge_pool_counts_only_for_the_classifier_judge(tiny_config):
    from polneurons.data import PAIRS_OUTSIDE_EVAL

    tiny_config["data"]["judge_pairs"] = max(PAIRS_OUTSIDE_EVAL.values())
    refused(tiny_config, "data.judge_pairs", "no training pool")
    tiny_config["judge"] = {"backend": "openai"}  # no judge pool is cut: nothing is short
    assert validate_config(tiny_config)["data"]["judge_pairs"] == max(PAIRS_OUTSIDE_EVAL.values())


def test_a_classifier_judge_split_with_no_training_side_is_refused(tiny_config):
    tiny_config["data"]["judge_pairs"] = 1
    tiny_config["judge"] = {"backend": "classifier", "classifier": {"test_fraction": 0.9}}
    refused(tiny_config, "judge.classifier.test_fraction", "data.judge_pairs")


def test_unknown_leaning_is_refused(tiny_config):
    tiny_config["leanings"] = ["centre"]
    refused(tiny_config, "'centre'", "left", "right")


@pytest.mark.parametrize("k", [0, -5, 150])
def test_k_outside_0_100_is_refused(tiny_config, k):
    tiny_config["neurons"]["k"] = k
    refused(tiny_config, "neurons.k", str(k), "> 0 and <= 100")


@pytest.mark.parametrize("n", [0, 150])
def test_inhibited_percentage_outside_0_100_is_refused(tiny_config, n):
    tiny_config["inhibitft"]["n"] = [n]
    refused(tiny_config, "inhibitft.n", "> 0 and <= 100")


def test_source_topic_outside_the_test_topics_is_refused(tiny_config):
    tiny_config["source_topics"] = ["science"]
    refused(tiny_config, "source_topics", "science", "add them to topics")


def test_missing_mirror_folder_is_refused(tiny_config, tmp_path):
    tiny_config["data"]["mirror"] = str(tmp_path / "no-such-mirror")
    refused(tiny_config, "data.mirror", "no-such-mirror", "null to download")


def test_missing_local_model_folder_is_refused(tiny_config, tmp_path):
    tiny_config["model_registry"]["tiny"]["path"] = str(tmp_path / "no-such-model")
    refused(tiny_config, "model_registry.tiny.path", "no-such-model", "checkpoint folder")


def test_inhibition_that_cannot_act_is_refused(tiny_config):
    """freeze_rows at mlp_output freezes rows of down_proj: LoRA on q_proj, v_proj only would
    leave nothing to freeze, and InhibitFT would silently equal vanilla fine-tuning."""
    tiny_config["finetune"]["lora"]["target_modules"] = ["q_proj", "v_proj"]
    tiny_config["neurons"]["site"] = "mlp_output"
    tiny_config["inhibitft"]["strategies"] = ["freeze_rows"]
    refused(tiny_config, "InhibitFT cannot act", "down_proj", "target_modules")


def test_strings_from_the_command_line_are_read_as_the_schema_types(tiny_config):
    """Snakemake hands nested --config values over as strings ('neurons={k: 5}' gives '5')."""
    cli = copy.deepcopy(tiny_config)
    cli["neurons"]["k"] = "5"
    cli["data"]["mirror"] = "null"
    cli["finetune"]["max_steps"] = "null"
    cli["data"]["holdout_eval"] = "false"
    cli["finetune"]["lr"] = "1e-3"
    cfg = validate_config(cli)
    assert cfg["neurons"]["k"] == 5 and cfg["data"]["mirror"] is None
    assert cfg["finetune"]["max_steps"] is None and cfg["data"]["holdout_eval"] is False
    assert cfg["finetune"]["lr"] == pytest.approx(1e-3)
    cli["neurons"]["k"] = "lots"
    refused(cli, "neurons.k", "'lots'", "a number")


def test_chat_prompt_format_with_a_tokenizer_without_chat_template_is_refused(tokenizer):
    from polneurons.prompts import render

    plain = copy.copy(tokenizer)
    plain.chat_template = None
    with pytest.raises(ConfigError) as err:
        render(plain, "What about guns?", "chat")
    one_line(err.value, "prompt_format", "chat template", "bare")


# ---------------------------------------------------------------- data


@pytest.fixture
def data_root(tmp_path):
    """A private copy of the mirror's IdeoINST race files and race eval set, ready to break."""
    mirror = require_mirror()
    for rel in (
        data.ideoinst_path("race", "left"),
        data.ideoinst_path("race", "right"),
        data.eval_set_path("race"),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / rel, tmp_path / rel)
    return tmp_path


def left_file(root: Path) -> Path:
    return root / data.ideoinst_path("race", "left")


def records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def test_the_intact_copy_loads(data_root):
    assert len(data.load_pairs(data_root, "race")) > 100


def test_file_missing_from_the_mirror_names_the_file_and_the_mirror_layout(tmp_path):
    rel = data.eval_set_path("race")
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError) as err:
        data.fetch(rel, tmp_path / "raw" / rel, "http://unused.invalid/", str(tmp_path / "mirror"))
    one_line(err.value, "race.json", "missing from the data mirror", "data.mirror")
    assert not (tmp_path / "raw" / rel).exists()


def test_mirror_file_with_altered_bytes_fails_its_sha256(tmp_path):
    mirror = require_mirror()
    rel = data.ideoinst_path("science", "right")
    fake = tmp_path / "mirror" / rel
    fake.parent.mkdir(parents=True)
    fake.write_bytes(mirror.joinpath(rel).read_bytes()[:-2] + b"]\n")
    with pytest.raises(IntegrityError) as err:
        data.fetch(rel, tmp_path / "raw" / rel, "http://unused.invalid/", str(tmp_path / "mirror"))
    one_line(err.value, "sha256", "science_right_eval.json", "data.mirror")
    assert not (tmp_path / "raw" / rel).exists(), "a corrupt download must not be kept"


def test_bad_json_is_refused(data_root):
    left_file(data_root).write_text('[{"instruction": "a",')
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "race_left_eval.json", "not valid JSON", "delete it")


def test_record_missing_a_field_names_the_field(data_root):
    rows = records(left_file(data_root))
    del rows[7]["label"]
    left_file(data_root).write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "record 7", "lacks label")


def test_record_with_a_non_text_instruction_is_refused(data_root):
    rows = records(left_file(data_root))
    rows[2]["instruction"] = 42
    left_file(data_root).write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "record 2", "non-text instruction")


def test_left_and_right_files_of_different_lengths_are_refused(data_root):
    left_file(data_root).write_text(json.dumps(records(left_file(data_root))[:-3]))
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "race", "left vs", "right records", "re-download")


def test_left_and_right_files_with_different_instructions_are_refused(data_root):
    rows = records(left_file(data_root))
    rows[5]["instruction"] = "An instruction the right file does not have."
    left_file(data_root).write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "record 5", "different instructions", "same order")


def test_empty_topic_file_is_refused(data_root):
    left_file(data_root).write_text("[]")
    with pytest.raises(DataError) as err:
        data.load_pairs(data_root, "race")
    one_line(err.value, "race_left_eval.json", "empty list", "download_data")


def test_empty_evaluation_set_is_refused(data_root):
    (data_root / data.eval_set_path("race")).write_text("[]")
    with pytest.raises(DataError) as err:
        data.load_eval_set(data_root, "race")
    one_line(err.value, "race.json", "empty list")


def test_missing_prompt_template_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        data.load_template(tmp_path, "answer_prompt")
    one_line(err.value, "answer_prompt.txt", "missing", "download_data")


# ---------------------------------------------------------------- environment and models


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_without_network_or_mirror_says_how_to_set_the_mirror(tmp_path):
    rel = data.eval_set_path("race")
    with pytest.raises(EnvironmentProblem) as err:
        data.fetch(rel, tmp_path / rel, f"http://127.0.0.1:{closed_port()}/", None, timeout=5)
    one_line(err.value, "cannot download", "data={mirror:", "data.base_url")
    assert not (tmp_path / rel).exists()


def test_missing_api_key_of_the_openai_judge_names_the_variable(tmp_path, monkeypatch):
    from polneurons.judges import OpenAIJudge, Templates

    monkeypatch.delenv("POLNEURONS_TEST_ABSENT_KEY", raising=False)
    with pytest.raises(EnvironmentProblem) as err:
        OpenAIJudge(
            "http://127.0.0.1:9/v1",
            "gpt-4o-mini",
            templates=Templates(topic="{test_topic} {response}", general="{response}"),
            cache_path=tmp_path / "cache.jsonl",
            api_key_env="POLNEURONS_TEST_ABSENT_KEY",
        )
    message = one_line(err.value, "POLNEURONS_TEST_ABSENT_KEY", "export", "classifier")
    assert "sk-" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_a_gpu_is_refused(device):
    from polneurons.models import pick_device

    with pytest.raises(EnvironmentProblem) as err:
        pick_device(device)
    one_line(err.value, repr(device), "no GPU", "device: auto")


@pytest.mark.parametrize("model_type", ["opt", "bloom"])
def test_unsupported_architecture_lists_the_supported_types(tmp_path, model_type):
    import transformers

    from polneurons.models import prepare_model

    config = {
        "opt": lambda: transformers.OPTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            ffn_dim=32,
            num_attention_heads=2,
            vocab_size=64,
            word_embed_proj_dim=16,
        ),
        "bloom": lambda: transformers.BloomConfig(
            hidden_size=16, n_layer=1, n_head=2, vocab_size=64
        ),
    }[model_type]()
    config.save_pretrained(tmp_path / "model")
    with pytest.raises(ModelError) as err:
        prepare_model({"path": str(tmp_path / "model")}, tmp_path / "out")
    one_line(err.value, f"'{model_type}'", "not supported", "llama", "qwen2", "gpt_neox")
    assert not (tmp_path / "out" / "model.json").exists()


def test_model_folder_with_a_corrupt_config_json_is_refused(tmp_path):
    from polneurons.models import prepare_model

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": ')
    with pytest.raises(ModelError) as err:
        prepare_model({"path": str(tmp_path / "model")}, tmp_path / "out")
    one_line(err.value, "config.json", "not valid JSON")


def test_model_folder_that_is_no_checkpoint_is_refused(tmp_path):
    from polneurons.models import prepare_model

    (tmp_path / "model").mkdir()
    with pytest.raises(ModelError) as err:
        prepare_model({"path": str(tmp_path / "model")}, tmp_path / "out")
    one_line(err.value, "no config.json", "model_registry")


def rule_like(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` as a rule script does: inside user_errors, in a fresh interpreter."""
    script = "from polneurons.errors import user_errors\nwith user_errors():\n" + "".join(
        f"    {line}\n" for line in code.splitlines()
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_offline_hub_with_an_uncached_model_is_one_line(tmp_path):
    env = subprocess_env() | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = rule_like(
        "from polneurons.models import prepare_model\n"
        f"prepare_model({{'path': 'no-such-org/uncached-model'}}, {str(tmp_path / 'out')!r})",
        env,
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert_one_line_error(
        proc.stderr,
        "polneurons error:",
        "no-such-org/uncached-model",
        "HF_HUB_OFFLINE",
        "hf download",
        "model_registry",
    )


def test_altered_adapter_file_is_refused_by_its_checksum(tmp_path):
    """A run folder records the sha256 of its files; a reader refuses a changed adapter."""
    from polneurons.models import load_with_adapter, prepare_model, write_train_checksums
    from polneurons.testing import tiny_lora

    checkpoint = build_tiny_checkpoint(tmp_path / "model")
    record = prepare_model({"path": str(checkpoint)}, tmp_path / "prepared")
    train = tmp_path / "train"
    tiny_lora("llama").save_pretrained(train / "adapter")
    write_train_checksums(train)
    model, _ = load_with_adapter(record, train / "adapter", "float32", "cpu")
    assert model.peft_config
    weights = train / "adapter" / "adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0x01  # one bit of one weight: still a valid safetensors file
    weights.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError) as err:
        load_with_adapter(record, train / "adapter", "float32", "cpu")
    one_line(err.value, "adapter_model.safetensors", "sha256", "altered", "delete", "chmod")


# ---------------------------------------------------------------- through the command line


@pytest.fixture(scope="module")
def dry_run_model(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("dry-model") / "model")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("colour=blue", ["unknown key", "colour"]),
        ("neurons={k: 150}", ["neurons.k", "150", "<= 100"]),
        ("data={mirror: /no/such/mirror}", ["data.mirror", "/no/such/mirror"]),
    ],
)
def test_snakemake_dry_run_prints_one_config_error_line(tmp_path, dry_run_model, override, words):
    work = make_workdir(tmp_path / "run", dry_run_model, override)
    proc = work.run("-n", timeout=120)
    assert proc.returncode != 0, proc.output[-3000:]
    assert_one_line_error(proc.output, "polneurons config error:", *words)


def test_snakemake_dry_run_accepts_numbers_and_null_from_the_command_line(tmp_path, dry_run_model):
    work = make_workdir(tmp_path / "run", dry_run_model, "neurons={k: 5}")
    proc = work.run("-n", timeout=120)
    assert proc.returncode == 0, proc.output[-3000:]
    assert "polneurons config error" not in proc.output


def test_a_config_file_with_a_misspelt_key_is_one_line(tmp_path, dry_run_model):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["finetune"]["warmup"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    work = make_workdir(tmp_path / "run", dry_run_model)
    command = work.command("-n")
    command[command.index(str(TINY_CONFIG))] = str(bad)
    proc = subprocess.run(
        command, cwd=work.root, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert_one_line_error(
        proc.stdout + proc.stderr, "polneurons config error:", "finetune", "'warmup'"
    )


def test_download_rule_without_network_or_mirror_fails_in_one_line(tmp_path, dry_run_model):
    """The real download_data job, no mirror, a dead base URL: one 'polneurons error' line,
    in snakemake's output and in the rule's log, and no traceback."""
    work = make_workdir(
        tmp_path / "run",
        dry_run_model,
        f"data={{mirror: null, base_url: 'http://127.0.0.1:{closed_port()}/'}}",
    )
    command = work.command(f"{work.results}/data/raw/{next(iter(data.FILES))}", cores=1)
    mirror_arg = next(i for i, arg in enumerate(command) if arg.startswith("data={mirror: /"))
    del command[mirror_arg]  # this run has no mirror at all
    proc = subprocess.run(
        command,
        cwd=work.root,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    line = assert_one_line_error(
        proc.stdout, "polneurons error:", "cannot download", "data={mirror:"
    )
    log = (work.results / "logs" / "download_data.log").read_text()
    assert line in log and "Traceback" not in log
