"""Benchmark of lockstep patched generation (polneurons.patching.patched_generate).

Times, on the same prompts and batches, plain greedy generation of the fine-tuned model
(polneurons.generation.greedy_generate, adapter enabled; the base model, adapter disabled, is
timed too) against lockstep patched generation (two forwards per step: M_s, then patched M0)
with a random neuron set.
Goal: patched <= 2.2x plain per generated step (two forwards per step cost 2x; the hooks,
the adapter toggling and the second KV cache may add at most 10% on top).
Generated lengths can differ (EOS), so the goal is checked on time per decoding step;
steps are counted exactly from the forwards of decoder layer 0.

Usage: python benchmarks/bench_patching.py --model PATH [--adapter PATH] [--out FILE]
       python benchmarks/bench_patching.py --tiny --prompts 16 --new-tokens 16   (smoke run)
Without --adapter, a fresh LoRA (r 16, MLP projections) with random B is put on the model.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from polneurons.architectures import decoder_layers
from polneurons.generation import greedy_generate
from polneurons.patching import patched_generate
from polneurons.sites import NeuronSite
from polneurons.tiny import FIXTURE_TEXT

GOAL = 2.2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint folder (e.g. a paper base model)")
    source.add_argument("--tiny", action="store_true", help="the 2-layer tiny llama of the tests")
    parser.add_argument("--adapter", help="LoRA adapter folder (default: a fresh random LoRA)")
    parser.add_argument("--site", default="mlp_output", choices=["mlp_output", "mlp_intermediate"])
    parser.add_argument(
        "--fraction", type=float, default=0.05, help="share of each layer's neurons patched"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--out", default="benchmarks/results/patching.md")
    return parser.parse_args(argv)


def load(args):
    """(peft model with adapter, tokenizer) as patched_generate receives them."""
    from peft import LoraConfig, PeftModel, get_peft_model

    dtype = getattr(torch, args.dtype)
    if args.tiny:
        from polneurons.tiny import tiny_model, tiny_tokenizer

        base, tokenizer = tiny_model("llama").to(dtype), tiny_tokenizer()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    if args.adapter:
        model = PeftModel.from_pretrained(base, args.adapter)
    else:
        targets = r".*\.mlp\.(gate_proj|up_proj|down_proj|c_fc|c_proj|dense_h_to_4h|dense_4h_to_h)"
        model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:  # peft starts B at zero, which would make M_s = M0
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    return model.to(args.device).eval(), tokenizer


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


def timed(run, model, device: str, forwards_per_step: int) -> tuple[float, int]:
    """(seconds, decoding steps) of ``run()``; steps from the calls of decoder layer 0."""
    calls = [0]
    handle = decoder_layers(model)[0].register_forward_pre_hook(
        lambda module, args: calls.__setitem__(0, calls[0] + 1)
    )
    try:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return seconds, calls[0] // forwards_per_step


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load(args)
    prompts = make_prompts(args.prompts)
    neurons = random_neurons(model, args.site, args.fraction)
    common = dict(max_new_tokens=args.new_tokens, batch_size=args.batch_size)

    def plain_base():
        with model.disable_adapter():
            greedy_generate(model, tokenizer, prompts, **common)

    methods = {
        "plain (M_s, greedy_generate)": (
            lambda: greedy_generate(model, tokenizer, prompts, **common),
            1,
        ),
        "plain (M0, greedy_generate, adapter disabled)": (plain_base, 1),
        "patched (lockstep M_s + M0)": (
            lambda: patched_generate(model, tokenizer, prompts, neurons, args.site, **common),
            2,
        ),
    }
    greedy_generate(model, tokenizer, prompts[: args.batch_size], max_new_tokens=2)  # warm-up
    # Methods alternate within each repeat, so drifting machine load hits them alike.
    runs = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, (run, forwards_per_step) in methods.items():
            runs[name].append(timed(run, model, args.device, forwards_per_step))
    results = {}
    for name, timings in runs.items():
        seconds, steps = statistics.median(t[0] for t in timings), timings[0][1]
        results[name] = (seconds, steps, 1000 * seconds / steps)
    (plain_s, _, plain_ms), (_, _, base_ms), (patched_s, _, patched_ms) = results.values()
    per_step_ratio = patched_ms / plain_ms

    device_name = (
        torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    )
    lines = [
        "# Lockstep patched generation vs plain greedy generation",
        "",
        f"- Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"device {device_name}, torch {torch.__version__} ({args.threads} threads)",
        f"- Model: {'tiny llama (tests)' if args.tiny else args.model}, "
        f"adapter: {args.adapter or 'fresh random LoRA on the MLP projections'}, "
        f"dtype {args.dtype}",
        f"- {args.prompts} prompts, batch size {args.batch_size}, max {args.new_tokens} new "
        f"tokens, site {args.site}, {sum(len(v) for v in neurons.values())} neurons patched "
        f"({args.fraction:.0%} of each layer), median of {args.repeats} runs",
        "",
        "| method | seconds | decoding steps | ms / step |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {s:.3f} | {n} | {ms:.2f} |" for name, (s, n, ms) in results.items()),
        "",
        f"- patched / plain: {per_step_ratio:.2f}x per step, {patched_s / plain_s:.2f}x "
        f"end to end; goal <= {GOAL}x per step: {'met' if per_step_ratio <= GOAL else 'NOT met'}",
        f"- patched / (M_s + M0) per step: {patched_ms / (plain_ms + base_ms):.2f}x "
        "(the cost of the hooks, the adapter switch and the lockstep bookkeeping)",
        f"- command: `{' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}`",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
