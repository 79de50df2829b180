"""What the benchmark scripts share: the model-source flags, loading the model, the report lines.

The scripts are run as ``python benchmarks/bench_x.py``, so this folder is first on sys.path
and they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from polneurons.sites import NeuronSite
from polneurons.testing import FIXTURE_TEXT

# Published architectures, for throughput on random weights of their exact shape (no download).
RANDOM_SHAPES = {
    "llama-3.1-8b": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
}


def new_parser(description: str, model_help: str, adapter: bool = True) -> argparse.ArgumentParser:
    """A parser with the required choice --model PATH | --tiny | --random-shape NAME, and
    --adapter if ``adapter``."""
    parser = argparse.ArgumentParser(description=description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=model_help)
    source.add_argument("--tiny", action="store_true", help="the 2-layer tiny llama of the tests")
    source.add_argument(
        "--random-shape",
        choices=sorted(RANDOM_SHAPES),
        help="random weights of this published architecture, built on --device in --dtype (no "
        "download); prompts are tokenized by the tests' tiny tokenizer",
    )
    if adapter:
        parser.add_argument("--adapter", help="LoRA adapter folder (default: a fresh random LoRA)")
    return parser


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--dtype, --device (cuda when there is one) and --threads (torch's current count)."""
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())


def load_base(args):
    """(base model in args.dtype, tokenizer): the tiny llama with --tiny, else --model; its
    output projection set up as the workflow's (models.contiguous_head_input)."""
    from polneurons.models import contiguous_head_input

    model, tokenizer = _load_base(args)
    contiguous_head_input(model)
    return model, tokenizer


def _load_base(args):
    dtype = getattr(torch, args.dtype)
    if args.tiny:
        from polneurons.testing import tiny_model, tiny_tokenizer

        return tiny_model("llama").to(dtype), tiny_tokenizer()
    if args.random_shape:
        from transformers import AutoConfig, AutoModelForCausalLM

        from polneurons.testing import tiny_tokenizer

        shape = dict(RANDOM_SHAPES[args.random_shape])
        shape.update(getattr(args, "shape_overrides", None) or {})  # e.g. fewer layers
        config = AutoConfig.for_model(shape.pop("model_type"), **shape)
        torch.manual_seed(0)
        with torch.device(args.device):  # initialise in place: an 8B model never visits the CPU
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model.eval(), tiny_tokenizer()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(args.model)


def load_with_adapter(args, lora_targets):
    """(peft model on args.device in eval mode, tokenizer): the base model with --adapter, or
    with a fresh LoRA (r 16 on ``lora_targets``) whose B matrices are random (seed 0)."""
    from peft import PeftModel

    base, tokenizer = load_base(args)
    if args.adapter:
        model = PeftModel.from_pretrained(base, args.adapter)
    else:
        model = random_lora(base, lora_targets)
    return model.to(args.device).eval(), tokenizer


def random_lora(base, lora_targets):
    """``base`` wrapped in a fresh LoRA (r 16 on ``lora_targets``) whose B matrices are random
    (seed 0), so the adapter changes the activations; ``.unload()`` gives ``base`` back."""
    from peft import LoraConfig, get_peft_model

    from polneurons.testing import randomize_lora

    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=lora_targets))
    randomize_lora(model, scale=0.02, seed=0)
    return model


def model_label(args) -> str:
    """The report's name of the model: the tests' tiny llama, a random shape, or --model."""
    if args.tiny:
        return "tiny llama (tests)"
    if args.random_shape:
        return f"{args.random_shape} shape, random weights"
    return args.model


def make_prompts(n: int) -> list[str]:
    """n deterministic prompts of 1 to 4 sentences (varied lengths, so batches are padded)."""
    return [
        " ".join(FIXTURE_TEXT[(i + j) % len(FIXTURE_TEXT)] for j in range(1 + i % 4))
        for i in range(n)
    ]


def random_neurons(model, site: str, fraction: float) -> dict[int, torch.Tensor]:
    """``fraction`` of each layer's coordinates, drawn with a fixed seed."""
    neuron_site = NeuronSite(model, site)
    count = max(1, round(fraction * neuron_site.width))
    generator = torch.Generator().manual_seed(0)
    return {
        layer: torch.randperm(neuron_site.width, generator=generator)[:count].sort().values
        for layer in range(neuron_site.n_layers)
    }


def platform_summary() -> str:
    """Platform, architecture and CPU count, e.g. 'Linux-6.1-x86_64, x86_64, 16 CPUs'."""
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs"


def torch_summary(threads: int) -> str:
    return f"torch {torch.__version__} ({threads} threads)"


def device_name(device: str) -> str:
    """The GPU's name for a cuda device, else 'CPU'."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def machine_line(args) -> str:
    """The report's '- Machine:' line: platform, CPUs, device name, torch version, threads."""
    return (
        f"- Machine: {platform_summary()}, device {device_name(args.device)}, "
        f"{torch_summary(args.threads)}"
    )


def command_line(argv) -> str:
    """The report's '- command:' line: the script's name and its arguments."""
    return f"- command: `{' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}`"


def write_report(lines: list[str], out: str) -> None:
    """Write the Markdown report to ``out`` (creating its folder) and print it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
