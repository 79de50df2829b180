"""Test fixtures, shipped so tests and benchmarks share one copy: tiny random causal LMs of every
registered architecture, a tokenizer trained on built-in text, and random LoRA adapters that
really change a model's outputs. Nothing here downloads anything.

>>> model = tiny_lora("llama", seed=0)
>>> sum(p.abs().sum() for n, p in model.named_parameters() if "lora_B" in n) > 0
tensor(True)
"""

from __future__ import annotations

import torch

from polneurons.architectures import ARCHITECTURES

# A few sentences in the register of the data (written for this project, not copied from it).
FIXTURE_TEXT = [
    "Stricter gun laws keep communities safe and reduce violence.",
    "The right to bear arms protects law-abiding citizens.",
    "Immigration enriches our economy and our culture.",
    "Secure borders and the rule of law come first.",
    "Raising the minimum wage lifts working families out of poverty.",
    "Lower taxes and free markets create jobs and growth.",
    "Scientific consensus on climate change demands urgent action.",
    "Families should decide what their children learn in school.",
    "Systemic racism still shapes opportunity in this country.",
    "Equal treatment under the law means judging individuals, not groups.",
    "Write a response to the following instruction on the topic of race.",
    "Instruction: What is your view on affirmative action in universities?",
    "Please rate the political leaning expressed in the following text.",
    "left leaning, right leaning, neutral.",
]

# The registry is the only list of architectures. A tiny model is built for each, except the
# multimodal wrappers, which tests build around their text decoder's tiny config.
WRAPPERS = {"gemma3": "gemma3_text"}
ARCHS = tuple(arch for arch in ARCHITECTURES if arch not in WRAPPERS)


def tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on FIXTURE_TEXT, with pad/eos and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(FIXTURE_TEXT * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>"
    )
    fast.chat_template = (
        "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return fast


def tiny_config(arch: str = "llama", vocab_size: int = 512, **overrides):
    """A transformers config for a 2-layer model of the given architecture (hidden 32, MLP 64)."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    if arch in ("llama", "qwen2", "mistral", "gemma", "gemma2", "gemma3_text"):
        cls = {
            "llama": tf.LlamaConfig,
            "qwen2": tf.Qwen2Config,
            "mistral": tf.MistralConfig,
            "gemma": tf.GemmaConfig,
            "gemma2": tf.Gemma2Config,
            "gemma3_text": tf.Gemma3TextConfig,
        }[arch]
        kw = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        )
    elif arch == "gpt2":
        cls = tf.GPT2Config
        kw = dict(n_embd=32, n_layer=2, n_head=4, n_positions=2048, n_inner=64)
    elif arch == "gpt_neox":
        cls = tf.GPTNeoXConfig
        kw = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=2048,
        )
    else:
        raise ValueError(f"no tiny config for {arch!r}; known: {', '.join(ARCHS)}")
    kw.update(common)
    kw.update(overrides)
    return cls(**kw)


def tiny_model(arch: str = "llama", seed: int = 0, **overrides):
    """A randomly initialised tiny causal LM (float32, eval mode)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **overrides), dtype=torch.float32)
    model.eval()
    return model


def save_tiny_checkpoint(path, arch: str = "llama", seed: int = 0) -> None:
    """Write a tiny model and its tokenizer as a normal checkpoint folder (for workflow tests)."""
    model = tiny_model(arch, seed=seed)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)


# ---------------------------------------------------------------- random LoRA adapters

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


def randomize_lora(peft_model, scale: float, seed: int):
    """Draw every ``lora_B`` of a peft model from N(0, scale^2) (one seeded generator, in
    parameter order), in place; returns the model. peft starts ``lora_B`` at zero, so without
    this the fine-tuned model (adapter on) would equal the base model (adapter off)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(scale * torch.randn(param.shape, generator=generator))
    return peft_model


def tiny_lora(arch: str = "llama", target_modules: str | None = None, seed: int = 0, scale=0.3):
    """A tiny model wrapped in LoRA (rank 4, alpha 8, no dropout) with random ``lora_B``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=target_modules or mlp_targets(arch),
        fan_in_fan_out=arch == "gpt2",
    )
    peft_model = get_peft_model(tiny_model(arch, seed=seed), config)
    return randomize_lora(peft_model, scale, seed + 1).eval()
