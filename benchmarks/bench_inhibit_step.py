"""Benchmark of one InhibitFT training step against a vanilla step (polneurons.finetune.train_step).

Times one optimizer step (forward, backward, AdamW update) of vanilla fine-tuning and of
InhibitFT with each strategy (freeze_rows: gradient masking and restoring the frozen slices;
stopgrad: gradient-blocking hooks; anchor: one more no-grad forward with the adapter off, stopped
after the last anchored layer, and the anchor term; LoRA only), on one model with the same LoRA targets (or full FT), the
same batch and the same random neuron set. The variants take turns step by step, so drift of a
shared machine hits them alike; the median over the timed steps is reported after warm-up.
Goals: a freeze_rows or stopgrad step costs at most 1.05x a vanilla step, an anchor step at most
1.5x (its extra forward is a third of a step's forward and backward, less the layers after F_n).

Usage: python benchmarks/bench_inhibit_step.py --model PATH [--method full] [--out FILE]
       python benchmarks/bench_inhibit_step.py --tiny --steps 20   (smoke run)
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from common import (
    add_runtime_arguments,
    command_line,
    load_base,
    machine_line,
    model_label,
    new_parser,
    random_neurons,
    write_report,
)
from transformers import get_linear_schedule_with_warmup

from polneurons.finetune import add_lora, collate, resolve_config, tokenize_example, train_step
from polneurons.inhibit import STRATEGIES, Inhibition
from polneurons.testing import FIXTURE_TEXT

GOALS = {"freeze_rows": 1.05, "stopgrad": 1.05, "anchor": 1.5}
ALL_PROJECTIONS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def parse_args(argv=None):
    parser = new_parser(
        __doc__.splitlines()[0], "checkpoint folder (e.g. a paper base model)", adapter=False
    )
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--targets", default=ALL_PROJECTIONS, help="LoRA target modules")
    parser.add_argument("--site", default="mlp_output", choices=["mlp_output", "mlp_intermediate"])
    parser.add_argument(
        "--fraction", type=float, default=0.05, help="share of each layer's neurons inhibited"
    )
    add_runtime_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--seq-len", type=int, help="tokens per example (default 512, 128 with --tiny)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (median)")
    parser.add_argument("--out", default="benchmarks/results/inhibit_step.md")
    return parser.parse_args(argv)


def make_batch(tokenizer, args) -> dict:
    """`batch_size` copies of one example of exactly `seq_len` tokens (short prompt, long answer)."""
    completion = " ".join(FIXTURE_TEXT * (1 + args.seq_len // 50))
    example = tokenize_example(tokenizer, FIXTURE_TEXT[10], completion, args.seq_len, True)
    if len(example[0]) < args.seq_len:
        raise SystemExit(f"could not build {args.seq_len} tokens; use a smaller --seq-len")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return collate([example] * args.batch_size, pad_id, args.device)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.seq_len = args.seq_len or (128 if args.tiny else 512)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = load_base(args)
    cfg = resolve_config(
        {"method": args.method, "lora": {"target_modules": args.targets.split(",")}}
    )
    model = add_lora(model, cfg) if args.method == "lora" else model.requires_grad_(True)
    model.to(args.device).train()
    neurons = random_neurons(model, args.site, args.fraction)
    group = [make_batch(tokenizer, args)]
    strategies = [s for s in STRATEGIES if args.method == "lora" or s != "anchor"]
    inhibitions = {"vanilla": None}
    for strategy in strategies:
        spec = {"strategy": strategy, "site": args.site, "neurons": neurons, "anchor_weight": 1.0}
        inhibitions[strategy] = Inhibition(model, spec)
        if strategy == "anchor":
            inhibitions[strategy].calibrate(group)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10 * (args.warmup + args.steps))
    cuda = args.device.startswith("cuda")

    def step(inhibition) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with inhibition.active() if inhibition else contextlib.nullcontext():
            train_step(model, group, optimizer, scheduler, inhibition)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times = {name: [] for name in inhibitions}
    for round_ in range(args.warmup + args.steps):
        for name, inhibition in inhibitions.items():  # variants take turns, step by step
            seconds = step(inhibition)
            if round_ >= args.warmup:
                times[name].append(seconds)
    median_ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    quartiles_ms = {
        name: [1000 * q for q in statistics.quantiles(t, n=4)] for name, t in times.items()
    }

    n_neurons = sum(len(v) for v in neurons.values())
    lines = [
        "# InhibitFT training step vs vanilla training step",
        "",
        machine_line(args),
        f"- Model: {model_label(args)}, dtype {args.dtype}, "
        f"{args.method}"
        + (f" (targets {args.targets})" if args.method == "lora" else "")
        + f", {sum(p.numel() for p in trainable)} trainable parameters",
        f"- Batch {args.batch_size} x {args.seq_len} tokens, site {args.site}, {n_neurons} "
        f"neurons inhibited ({args.fraction:.0%} of each layer), median of {args.steps} steps "
        f"per variant after {args.warmup} warm-up steps, variants interleaved",
        "",
        "| variant | median ms / step | quartiles ms | vs vanilla |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {median_ms[name]:.2f} | {quartiles_ms[name][0]:.2f}-"
            f"{quartiles_ms[name][2]:.2f} | {median_ms[name] / median_ms['vanilla']:.3f}x |"
            for name in inhibitions
        ),
        "",
        *(
            f"- {strategy}: goal <= {GOALS[strategy]}x: "
            f"{'met' if median_ms[strategy] / median_ms['vanilla'] <= GOALS[strategy] else 'NOT met'}"
            for strategy in strategies
        ),
        command_line(argv),
        "",
    ]
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
