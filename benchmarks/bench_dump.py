"""Benchmark of the activation dump (polneurons.activations.dump_activations).

Measures, over the same prompts and batches:
- dump throughput (prompt tokens/s) against bare forwards of the same two models (adapter on and
  off, no hooks, same forward arguments, tokenization included): goal >= 0.95 of it;
- the same dump with the recording done by nnsight instead of NeuronSite hooks (shards written by
  the same code), if nnsight is installed: goal, ours faster; its r_t is checked against ours;
- peak RSS of a whole dump of a small and a large number of prompts, each in a fresh
  subprocess: goal, within 10% (memory must not grow with the number of prompts).

Usage: python benchmarks/bench_dump.py --model PATH [--adapter PATH] [--out benchmarks/results/dump.md]
       python benchmarks/bench_dump.py --tiny --prompts 16 --rss-prompts 20 40   (smoke run)
Without --adapter, a fresh LoRA (r 16, q_proj and v_proj) with random B is put on the model.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from common import (
    add_runtime_arguments,
    load_with_adapter,
    make_prompts,
    model_label,
    new_parser,
    platform_summary,
    torch_summary,
    write_report,
)

from polneurons import activations
from polneurons.activations import dump_activations, topic_contrast
from polneurons.models import AdapterSwitch


def parse_args(argv=None):
    parser = new_parser(
        __doc__.splitlines()[0], "checkpoint folder (e.g. the converted SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--site", default="mlp_output", choices=["mlp_output", "mlp_intermediate"])
    add_runtime_arguments(parser)
    parser.add_argument("--prompts", type=int, default=64, help="prompts for the throughput runs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--rss-prompts", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--out", default="benchmarks/results/dump.md")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load(args):
    """(peft model with adapter, tokenizer) as the dump receives them."""
    return load_with_adapter(args, ["q_proj", "v_proj"])


def make_prompts_and_ids(n: int) -> tuple[list[str], list[str]]:
    """n deterministic prompts (common.make_prompts) and their ids p00000, p00001, ..."""
    return make_prompts(n), [f"p{i:05d}" for i in range(n)]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_forwards(model, tokenizer, prompts, args) -> None:
    """The dump's model work with no hooks: tokenize, pad, forward with the adapter off (by the
    same switch as the dump) and on."""
    device = next(model.parameters()).device
    switch = AdapterSwitch(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        for start in range(0, len(prompts), args.batch_size):
            tokens = tokenizer(prompts[start : start + args.batch_size])["input_ids"]
            input_ids, attention_mask = activations._pad_right(tokens, pad_id, device)
            forward = dict(
                input_ids=input_ids,
                attention_mask=attention_mask,
                use_cache=False,
                logits_to_keep=1,
            )
            with switch.disabled():
                model(**forward)
            model(**forward)


def nnsight_contrast_batch(model):
    """A drop-in for activations._contrast_batch that records through nnsight instead of hooks."""
    from nnsight import NNsight

    traced = NNsight(model)
    names = {module: name for name, module in model.named_modules()}

    def envoy(path):
        node = traced
        for part in path.split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        return node

    def contrast_batch(model, neuron_site, input_ids, attention_mask, counted, raw_tokens, switch):
        envoys = [envoy(names[neuron_site.module(layer)]) for layer in range(neuron_site.n_layers)]
        output_site = neuron_site.site == "mlp_output"
        forward = dict(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1
        )

        def run():
            saved = []  # filled inside the trace: nnsight runs its body apart from this frame
            with traced.trace(**forward):
                saved.extend((e.output if output_site else e.input).save() for e in envoys)
            return torch.stack(saved, 1)  # [batch, n_layers, tokens, width]

        with switch.disabled():
            base = run()
        tuned = run()
        rows = torch.arange(len(input_ids), device=input_ids.device)
        last = attention_mask.sum(1) - 1
        kept = counted & attention_mask.bool()
        padding = ~kept[:, None, :, None]
        reference = base.float().masked_fill_(padding, 0)
        diff = tuned.float().masked_fill_(padding, 0) - reference
        out = {
            "prompt_length": (last + 1).cpu(),
            "n_tokens": kept.sum(1).cpu(),
            "sq_diff_sum": diff.square().sum(2).cpu(),
            "sq_base_sum": reference.square().sum(2).cpu(),
            "last_m0": base[rows, :, last].half().cpu(),
            "last_ms": tuned[rows, :, last].half().cpu(),
        }
        if raw_tokens:
            out["raw_m0"] = base.transpose(1, 2).half().cpu()
            out["raw_ms"] = tuned.transpose(1, 2).half().cpu()
        return out

    return contrast_batch


def timed(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def rss_child(args) -> None:
    """Run one whole dump of args.rss_child prompts and print its peak RSS as JSON."""
    model, tokenizer = load(args)
    prompts, ids = make_prompts_and_ids(args.rss_child)
    with tempfile.TemporaryDirectory() as tmp:
        dump_activations(
            model, tokenizer, prompts, ids, Path(tmp) / "dump", site=args.site,
            batch_size=args.batch_size, shard_size=args.shard_size,
        )  # fmt: skip
    print(json.dumps({"prompts": args.rss_child, "peak_rss_mib": peak_rss_mib()}))


def measure_rss(n_prompts: int, argv: list[str]) -> float:
    child = subprocess.run(
        [sys.executable, __file__, *argv, "--rss-child", str(n_prompts)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def nnsight_version() -> str | None:
    try:
        import nnsight
    except ImportError:
        return None
    return nnsight.__version__


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        rss_child(args)
        return
    model, tokenizer = load(args)
    prompts, ids = make_prompts_and_ids(args.prompts)
    n_tokens = sum(len(t) for t in tokenizer(prompts)["input_ids"])
    dump_kwargs = dict(site=args.site, batch_size=args.batch_size, shard_size=args.shard_size)
    nnsight = nnsight_version()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def ours():
            dump_activations(model, tokenizer, prompts, ids, tmp / "ours", **dump_kwargs)

        def with_nnsight():
            recorder = nnsight_contrast_batch(model)
            with mock.patch.object(activations, "_contrast_batch", recorder):
                dump_activations(model, tokenizer, prompts, ids, tmp / "nnsight", **dump_kwargs)

        methods = {
            "bare forwards (no hooks)": lambda: bare_forwards(model, tokenizer, prompts, args),
            "dump (NeuronSite hooks)": ours,
        }
        if nnsight:
            methods["dump (nnsight)"] = with_nnsight
        for fn in methods.values():  # warm-up
            fn()
        seconds = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                seconds[name].append(timed(fn, args.device))
        median = {name: statistics.median(s) for name, s in seconds.items()}
        r_gap = (
            float((topic_contrast(tmp / "ours") - topic_contrast(tmp / "nnsight")).abs().max())
            if nnsight
            else None
        )

    rss = {n: measure_rss(n, argv) for n in args.rss_prompts}
    small, large = args.rss_prompts
    rss_growth = rss[large] / rss[small] - 1

    throughput = {name: n_tokens / s for name, s in median.items()}
    bare = throughput["bare forwards (no hooks)"]
    dump_rate = throughput["dump (NeuronSite hooks)"]
    lines = [
        "# Activation dump benchmark",
        "",
        f"- Machine: {platform_summary()}, {torch_summary(args.threads)}, device {args.device}",
        f"- Model: {model_label(args)}, dtype {args.dtype}, "
        f"adapter {args.adapter or 'fresh random LoRA r16 on q_proj, v_proj'}",
        f"- Site {args.site}; {args.prompts} prompts, {n_tokens} prompt tokens; "
        f"batch {args.batch_size}, shard {args.shard_size}; median of {args.repeats} runs "
        "after one warm-up",
        f"- nnsight: {f'available ({nnsight})' if nnsight else 'not installed'}",
        "",
        "| method | seconds | prompt tokens/s | vs bare |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {median[name]:.3f} | {rate:,.0f} | {rate / bare:.3f} |"
            for name, rate in throughput.items()
        ),
        "",
        f"- Goal dump >= 0.95 x bare: {dump_rate / bare:.3f} "
        f"({'met' if dump_rate / bare >= 0.95 else 'NOT met'})",
    ]
    if nnsight:
        speedup = dump_rate / throughput["dump (nnsight)"]
        lines.append(
            f"- Goal dump faster than nnsight: {speedup:.2f}x ({'met' if speedup > 1 else 'NOT met'}); "
            f"max |r_t(ours) - r_t(nnsight)| = {r_gap:.2e}"
        )
    lines += [
        "",
        "| prompts in the dump | peak RSS (MiB, fresh process) |",
        "|---:|---:|",
        *(f"| {n} | {mib:,.1f} |" for n, mib in rss.items()),
        "",
        f"- Goal peak RSS at {large} within 10% of {small}: {rss_growth:+.1%} "
        f"({'met' if rss_growth <= 0.10 else 'NOT met'})",
        "",
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
