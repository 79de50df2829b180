import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from polneurons.errors import ConfigError
from polneurons.finetune import (
    IGNORE_INDEX,
    collate,
    completion_loss_sum,
    finetune,
    tokenize_example,
)
from polneurons.testing import tiny_model

EXAMPLES = [
    ("Instruction: What is your view on guns?", "The right to bear arms protects citizens."),
    ("Instruction: What about immigration?", "Secure borders and the rule of law come first."),
    ("Instruction: And the economy?", "Lower taxes and free markets create jobs and growth."),
]
MLP_TARGETS = ["gate_proj", "up_proj", "down_proj"]


def small_cfg(**overrides):
    cfg = {
        "lr": 1e-2,
        "warmup_steps": 0,
        "epochs": 2,
        "max_length": 64,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": MLP_TARGETS},
    }
    cfg.update(overrides)
    return cfg


def test_labels_cover_the_completion_and_eos_only(tokenizer):
    prompt, completion = EXAMPLES[0]
    ids, labels = tokenize_example(tokenizer, prompt, completion, 512, add_special_tokens=True)
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert ids == prompt_ids + completion_ids + [tokenizer.eos_token_id]
    assert labels == [IGNORE_INDEX] * len(prompt_ids) + completion_ids + [tokenizer.eos_token_id]


def test_truncation_keeps_the_prompt_start(tokenizer):
    prompt, completion = EXAMPLES[0]
    full, _ = tokenize_example(tokenizer, prompt, completion, 512, add_special_tokens=True)
    ids, labels = tokenize_example(tokenizer, prompt, completion, 5, add_special_tokens=True)
    assert ids == full[:5]
    assert len(labels) == 5


def test_padding_is_masked_and_unlabelled(tokenizer):
    batch = [tokenize_example(tokenizer, p, c, 512, True) for p, c in EXAMPLES[:2]]
    tensors = collate(batch, tokenizer.pad_token_id, "cpu")
    short = min(range(2), key=lambda row: len(batch[row][0]))
    n = len(batch[short][0])
    assert (tensors["labels"][short, n:] == IGNORE_INDEX).all()
    assert (tensors["attention_mask"][short, n:] == 0).all()
    assert (tensors["input_ids"][short, n:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_completion_loss_skipping_prompt_logits_equals_the_full_loss(tokenizer, arch):
    batch = [tokenize_example(tokenizer, p, c, 512, True) for p, c in EXAMPLES]
    tensors = collate(batch, tokenizer.pad_token_id, "cpu")
    model = tiny_model(arch, vocab_size=len(tokenizer))
    with torch.no_grad():
        logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"])
        full = torch.nn.functional.cross_entropy(
            logits.logits[:, :-1].flatten(0, 1),
            tensors["labels"][:, 1:].flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        assert torch.allclose(completion_loss_sum(model, tensors), full, rtol=1e-5)


def test_lora_changes_only_adapter_weights(tokenizer, tmp_path):
    model = tiny_model("llama")
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = finetune(model, tokenizer, EXAMPLES, small_cfg(weight_decay=0.1), tmp_path / "ft")
    after = dict(result.model.get_base_model().named_parameters())
    for name, value in base.items():
        lora_wrapped = name.replace(".weight", ".base_layer.weight")
        assert torch.equal(after.get(name, after.get(lora_wrapped)), value), name
    adapter = {n: p for n, p in after.items() if "lora_B" in n}
    assert len(adapter) == 3 * 2  # gate, up, down in 2 layers
    assert all(p.abs().sum() > 0 for p in adapter.values())  # B starts at zero and moved


def test_run_saves_adapter_and_training_log(tokenizer, tmp_path):
    out = tmp_path / "ft"
    result = finetune(tiny_model("llama"), tokenizer, EXAMPLES, small_cfg(), out)
    assert (out / "adapter" / "adapter_config.json").exists()
    saved = json.loads((out / "train_log.json").read_text())
    assert saved["total_steps"] == len(saved["steps"]) == 2 * len(EXAMPLES)
    assert saved["n_examples"] == len(EXAMPLES)
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    assert saved["trainable_parameters"] == trainable
    assert saved["config"]["lora"]["target_modules"] == MLP_TARGETS
    assert [s["step"] for s in saved["steps"]] == list(range(1, 7))
    assert not list(tmp_path.glob(".ft.*"))  # no temporary folder left behind


def test_full_finetune_saves_a_loadable_model(tokenizer, tmp_path):
    out = tmp_path / "ft"
    result = finetune(tiny_model("llama"), tokenizer, EXAMPLES, small_cfg(method="full"), out)
    loaded = AutoModelForCausalLM.from_pretrained(out / "model")
    trained = dict(result.model.named_parameters())
    for name, param in loaded.named_parameters():
        assert torch.equal(param, trained[name]), name
    assert result.log["trainable_parameters"] == sum(p.numel() for p in trained.values())
    assert not torch.equal(
        trained["model.layers.0.mlp.down_proj.weight"],
        dict(tiny_model("llama").named_parameters())["model.layers.0.mlp.down_proj.weight"],
    )


def trained_state(result):
    return {n: p.detach() for n, p in result.model.named_parameters() if p.requires_grad}


def test_same_seed_runs_are_bit_identical(tokenizer, tmp_path):
    runs = [
        finetune(tiny_model("llama"), tokenizer, EXAMPLES, small_cfg(), tmp_path / f"ft{i}")
        for i in range(2)
    ]
    first, second = (trained_state(r) for r in runs)
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert [s["loss"] for s in runs[0].log["steps"]] == [s["loss"] for s in runs[1].log["steps"]]
    other_seed = finetune(
        tiny_model("llama"), tokenizer, EXAMPLES, small_cfg(seed=1), tmp_path / "seed1"
    )
    assert any(not torch.equal(first[n], trained_state(other_seed)[n]) for n in first)


def test_gradient_accumulation_matches_the_larger_batch(tokenizer, tmp_path):
    # The loss is a token-weighted mean over the optimizer step, so 2 x 1 equals 1 x 2.
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": MLP_TARGETS}
    runs = [
        finetune(
            tiny_model("llama"),
            tokenizer,
            EXAMPLES[:2],
            small_cfg(epochs=1, lora=lora, batch_size=bs, grad_accum=ga),
            tmp_path / f"ft{bs}",
        )
        for bs, ga in ((2, 1), (1, 2))
    ]
    assert runs[0].log["total_steps"] == runs[1].log["total_steps"] == 1
    batched, accumulated = (trained_state(r) for r in runs)
    for name in batched:
        torch.testing.assert_close(batched[name], accumulated[name], rtol=1e-4, atol=1e-6)


def test_warmup_then_linear_decay_and_max_steps_cap(tokenizer, tmp_path):
    cfg = small_cfg(epochs=6, warmup_steps=2, max_steps=4, lr=1e-3)
    result = finetune(tiny_model("llama"), tokenizer, EXAMPLES, cfg, tmp_path / "ft")
    assert [s["lr"] for s in result.log["steps"]] == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])
    assert [s["epoch"] for s in result.log["steps"]] == [0, 0, 0, 1]


def test_fractional_epochs_stop_part_way(tokenizer, tmp_path):
    result = finetune(
        tiny_model("llama"), tokenizer, EXAMPLES, small_cfg(epochs=0.5), tmp_path / "ft"
    )
    assert result.log["total_steps"] == len(result.log["steps"]) == 2  # ceil(3 * 0.5)


def test_training_memorises_a_tiny_set(tokenizer, tmp_path):
    # Full FT: a random tiny model's near-zero lm_head keeps LoRA-only logits near uniform.
    cfg = small_cfg(method="full", epochs=40)
    result = finetune(tiny_model("llama"), tokenizer, EXAMPLES[:1], cfg, tmp_path / "ft")
    losses = [s["loss"] for s in result.log["steps"]]
    assert losses[-1] < 0.2 * losses[0]


def test_missing_target_module_is_a_one_line_error_listing_linear_layers(tokenizer, tmp_path):
    with pytest.raises(ConfigError) as error:
        finetune(tiny_model("gpt2"), tokenizer, EXAMPLES, small_cfg(), tmp_path / "ft")
    message = str(error.value)
    assert "\n" not in message
    assert "gate_proj" in message and "c_attn" in message and "c_fc" in message
    assert not (tmp_path / "ft").exists()


def test_unknown_config_key_is_refused(tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="learning_rate"):
        finetune(tiny_model("llama"), tokenizer, EXAMPLES, {"learning_rate": 1}, tmp_path / "ft")
