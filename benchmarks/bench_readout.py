"""Benchmark of the teacher-forced readout (polneurons.readout.intervened_stance).

Times, on the same pairs and batches, one plain teacher-forced pass (the S_ll of M_s,
polneurons.likelihood.completion_mean_logprobs) against the readout of K neuron sets in both
directions, which runs M0 and M_s once (recording their site activations) and then one forward
per set and direction: 2 + 2K forwards. Goal: each of those forwards costs at most 1.2x a plain
pass (the recording, the hooks and the writes add at most 20%).

Usage: python benchmarks/bench_readout.py --model PATH [--adapter PATH] [--out FILE]
       python benchmarks/bench_readout.py --tiny --pairs 16   (smoke run)
Without --adapter, a fresh LoRA (r 16, MLP projections) with random B is put on the model.
The pairs are deterministic sentences of the test fixture (prompt, right answer, left answer).
"""

from __future__ import annotations

import statistics

import torch
from bench_dump import timed
from bench_patching import MLP_TARGETS
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

from polneurons.likelihood import completion_mean_logprobs, pair_sequences
from polneurons.readout import intervened_stance

GOAL = 1.2


def parse_args(argv=None):
    parser = new_parser(__doc__.splitlines()[0], "checkpoint folder (e.g. a converted SmolLM2)")
    parser.add_argument("--site", default="mlp_output", choices=["mlp_output", "mlp_intermediate"])
    parser.add_argument("--sets", type=int, default=5, help="neuron sets read out (K)")
    parser.add_argument("--fraction", type=float, default=0.05, help="share of each layer per set")
    add_runtime_arguments(parser)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--out", default="benchmarks/results/readout.md")
    return parser.parse_args(argv)


def make_pairs(n: int) -> list[tuple[str, str, str]]:
    prompts = make_prompts(n + 2)
    return [(prompts[i], " " + prompts[i + 1], " " + prompts[i + 2]) for i in range(n)]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_with_adapter(args, MLP_TARGETS)
    pairs = make_pairs(args.pairs)
    sets = {}
    for k in range(args.sets):
        torch.manual_seed(k)
        sets[f"set {k}"] = random_neurons(model, args.site, args.fraction * (1 + k % 3))
    common = dict(batch_size=args.batch_size, add_special_tokens=True)

    def plain():
        completion_mean_logprobs(
            model, tokenizer, pair_sequences(pairs), answer_tokens=args.answer_tokens, **common
        )

    def readout():
        intervened_stance(
            model, tokenizer, pairs, args.site, sets, answer_tokens=args.answer_tokens, **common
        )

    plain()  # warm-up
    runs = {"plain": [], "readout": []}
    for _ in range(args.repeats):  # alternate, so drifting load hits both alike
        runs["plain"].append(timed(plain, args.device))
        runs["readout"].append(timed(readout, args.device))
    plain_s = statistics.median(runs["plain"])
    readout_s = statistics.median(runs["readout"])
    forwards = 2 + 2 * args.sets
    per_forward = readout_s / forwards / plain_s
    lines = [
        "# Teacher-forced readout vs one plain teacher-forced pass",
        "",
        machine_line(args),
        f"- Model: {model_label(args)}, "
        f"adapter: {args.adapter or 'fresh random LoRA on the MLP projections'}, "
        f"dtype {args.dtype}",
        f"- {args.pairs} pairs ({2 * args.pairs} sequences), answers cut to "
        f"{args.answer_tokens} tokens, batch size {args.batch_size}, site {args.site}, "
        f"{args.sets} sets, median of {args.repeats} runs",
        "",
        "| method | forwards per batch | seconds |",
        "|---|---:|---:|",
        f"| plain pass (M_s) | 1 | {plain_s:.2f} |",
        f"| readout (M0, M_s, {args.sets} sets x 2 directions) | {forwards} | {readout_s:.2f} |",
        "",
        f"- per forward: {per_forward:.2f}x a plain pass; per set (both directions): "
        f"{(readout_s - 2 * readout_s / forwards) / args.sets / plain_s:.2f}x; goal <= {GOAL}x "
        f"per forward: {'met' if per_forward <= GOAL else 'NOT met'}",
        command_line(argv),
        "",
    ]
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
