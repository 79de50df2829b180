"""Test helper: wrap a tiny model in a peft LoRA adapter that really changes its outputs."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from polneurons.tiny import tiny_model

# Regexes over module names (peft matches them with re.fullmatch).
MLP_TARGETS = {
    "gpt2": r".*\.mlp\.(c_fc|c_proj)",
    "gpt_neox": r".*\.mlp\.(dense_h_to_4h|dense_4h_to_h)",
}
GATED_MLP_TARGETS = r".*\.mlp\.(gate_proj|up_proj|down_proj)"
ALL_LINEAR_TARGETS = r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def mlp_targets(arch: str) -> str:
    """LoRA target regex covering every projection of every MLP of a tiny ``arch`` model."""
    return MLP_TARGETS.get(arch, GATED_MLP_TARGETS)


def tiny_lora(arch: str = "llama", target_modules: str | None = None, seed: int = 0, scale=0.3):
    """A tiny model wrapped in LoRA (rank 4) whose ``lora_B`` weights are random, not zero.

    peft initialises ``lora_B`` to zero (the adapter starts as a no-op); drawing it from
    N(0, scale^2) makes the fine-tuned model (adapter enabled) differ from the base model.
    """
    model = tiny_model(arch, seed=seed)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=target_modules or mlp_targets(arch),
        fan_in_fan_out=arch == "gpt2",
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return peft_model.eval()
