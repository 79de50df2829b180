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

import statistics
import time

import torch
from common import (
    add_runtime_arguments,
    command_line,
    load_with_adapter,
    machine_line,
    make_prompts,
    model_label,
    new_parser,
    random_neurons,
    write_report,
)

from polneurons.architectures import decoder_layers
from polneurons.generation import greedy_generate
from polneurons.patching import patched_generate

GOAL = 2.2
# the LoRA targets of the fresh adapter: every MLP projection of the supported architectures
MLP_TARGETS = r".*\.mlp\.(gate_proj|up_proj|down_proj|c_fc|c_proj|dense_h_to_4h|dense_4h_to_h)"


def parse_args(argv=None):
    parser = new_parser(__doc__.splitlines()[0], "checkpoint folder (e.g. a paper base model)")
    parser.add_argument("--site", default="mlp_output", choices=["mlp_output", "mlp_intermediate"])
    parser.add_argument(
        "--fraction", type=float, default=0.05, help="share of each layer's neurons patched"
    )
    add_runtime_arguments(parser)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--out", default="benchmarks/results/patching.md")
    return parser.parse_args(argv)


def load(args):
    """(peft model with adapter, tokenizer) as patched_generate receives them."""
    return load_with_adapter(args, MLP_TARGETS)


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

    lines = [
        "# Lockstep patched generation vs plain greedy generation",
        "",
        machine_line(args),
        f"- Model: {model_label(args)}, "
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
        command_line(argv),
        "",
    ]
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
