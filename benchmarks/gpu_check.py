"""One device check: what the paper configuration's model jobs cost on this GPU, in one short run.

For a Llama-3.1-8B-shaped model with random weights in bfloat16 (no download), it measures, in
one process and on one device:
- the peak of a large bf16 matrix multiply (the yardstick of every utilisation below);
- the activation dump (adapter on and off over the same prompts), plain greedy generation and
  the lockstep patched generation: tokens/s and the model-FLOPs utilisation (MFU: model FLOPs
  per token x tokens/s / the measured matmul peak), as `MFU (<workload>): 0.123` lines that
  `polneurons-cost` reads (polneurons.cost.measured_mfus: each job at its workload's MFU);
- one LoRA training step and one InhibitFT step per strategy at the configuration's batch and
  sequence length: tokens/s, MFU (6 x params per token, 8 x with the anchor) and peak memory;
- each stage's peak memory against the `resources` memory the configuration asks for the model;
- the unit tests that have a CUDA path, run with pytest on this machine.

Every section has a time budget and is skipped, with the reason, when the run's budget
(--budget-s) cannot hold it; a section that fails is reported and the next one runs. The report
is rewritten after every line, so a run cut short still leaves what it measured.

FLOPs count every parameter of the base model (embeddings included, as the cost plan's params_b
does): 2 x params per token a forward pass reads, 4 x when two models run on each token (the
dump's adapter on and off, the lockstep patched generation), 6 x per trained token.

Usage: benchmarks/gpu_check.sh OUT            (GPU: writes OUT/gpu.md in at most 8 minutes)
       python benchmarks/gpu_check.py --out OUT --smoke    (CPU: a SmolLM2-sized model, small
                                                            shapes; checks the code paths)
Without CUDA, --smoke is implied. snakemake, jsonschema and gguf are not needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

# this folder on sys.path (as when run as a script), so the benchmarks import as modules
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_dump  # noqa: E402
import bench_inhibit_step  # noqa: E402
import bench_patching  # noqa: E402
import common  # noqa: E402

from polneurons import cost  # noqa: E402

REPO = HERE.parent
COST_REPORT = REPO / "benchmarks" / "results" / "gpu.md"  # what polneurons-cost reads
# the registry name (config model_registry) of each random shape, for its params_b
REGISTRY_NAME = {"llama-3.1-8b": "llama31_8b", "smollm2-135m": "smollm2"}
# the unit tests whose code branches on CUDA (pick_device / pick_dtype 'auto', the GPUs a job
# sees, the refusal of a cuda device without a GPU)
CUDA_TESTS = [
    "tests/test_models.py",
    "tests/test_gpus_progress.py",
    "tests/test_bad_inputs.py::test_cuda_requested_without_a_gpu_is_refused",
]
# a test that moves a model or tensor to a CUDA device would match this
CUDA_DEVICE_USE = re.compile(r"""\.(to|cuda)\(\s*["']cuda|device\s*=\s*["']cuda""")

# (GPU run, CPU smoke run): the sizes of each section and its time budget in seconds
SETTINGS = {
    "shape": ("llama-3.1-8b", "smollm2-135m"),
    "layers": (None, 4),
    "matmul_n": (8192, 512),
    "matmul_s": (2.0, 0.3),
    "batch_size": (None, 4),  # None: the config's (neurons, generation)
    "warmup_prompts": (None, 1),  # None: one batch
    "dump_prompts": (128, 4),
    "prompt_tokens": (128, 24),
    "gen_prompts": (16, 4),
    "new_tokens": (None, 3),  # None: the config's generation.max_new_tokens
    "seq_len": (None, 48),  # None: the config's finetune.max_length
    "timed_steps": (3, 1),
    "warmup_steps": (1, 0),
    "budget_s": (420, 150),
    "tests_timeout_s": (90, 55),
}
BUDGETS = {  # seconds each section may take (GPU, CPU smoke); the GPU's add up to 410 s
    "matmul": (15, 5),
    "model": (60, 20),
    "dump": (45, 15),
    "generation": (90, 20),
    "readout": (40, 15),
    "training": (60, 30),
    "tests": (100, 60),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of the report (OUT/gpu.md)")
    parser.add_argument("--smoke", action="store_true", help="CPU smoke sizes (implied w/o CUDA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    parser.add_argument("--config", default=str(REPO / "configs" / "paper.yaml"))
    parser.add_argument("--budget-s", type=float, help="whole run (default 420 GPU, 150 smoke)")
    parser.add_argument("--layers", type=int, help="decoder layers of the random model")
    parser.add_argument(
        "--tests", nargs="*", help=f"pytest node ids of the unit-test section ({CUDA_TESTS})"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(BUDGETS))
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's count; 1 in a smoke run)"
    )
    args = parser.parse_args(argv)
    args.smoke = args.smoke or not args.device.startswith("cuda")
    pick = 1 if args.smoke else 0
    args.settings = {key: values[pick] for key, values in SETTINGS.items()}
    args.budgets = {key: values[pick] for key, values in BUDGETS.items()}
    if args.layers is not None:
        args.settings["layers"] = args.layers
    if args.budget_s is None:
        args.budget_s = args.settings["budget_s"]
    if args.smoke and (Path(args.out) / "gpu.md").resolve() == COST_REPORT:
        parser.error(
            f"a smoke run's figures are not a GPU's: write them elsewhere than {COST_REPORT}, "
            "which the cost plan reads as measured"
        )
    args.tests = CUDA_TESTS if args.tests is None else args.tests
    # one thread, as the tests run: two threads on a busy 2-core machine are 20x slower
    args.threads = args.threads or (1 if args.smoke else torch.get_num_threads())
    return args


class Report:
    """The Markdown report, rewritten whole (atomically) after every addition, and echoed."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines += lines
        print("\n".join(lines), flush=True)
        self.write()

    def set(self, index: int, line: str) -> None:
        self.lines[index] = line
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".md.tmp")
        tmp.write_text("\n".join(self.lines) + "\n")
        os.replace(tmp, self.path)


class Clock:
    """The run's time budget, each section's (name -> seconds) and the sections to skip."""

    def __init__(self, total_s: float, budgets: dict, skip):
        self.total_s, self.budgets, self.skip = total_s, budgets, set(skip)
        self.start = time.perf_counter()
        self.section_end = self.start + total_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def allows(self, seconds: float) -> bool:
        """Whether `seconds` more fit in the current section's budget and the run's."""
        return time.perf_counter() + seconds <= min(self.section_end, self.start + self.total_s)


class Memory:
    """Peak memory of a stage: allocated GPU memory on CUDA (reset per stage), else the
    process's peak RSS so far (it cannot be reset: it is the peak up to the stage's end)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.label = "peak GPU memory allocated" if self.cuda else "peak RSS of the process so far"

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 1e9
        return bench_dump.peak_rss_mib() * 2**20 / 1e9

    def total_gb(self) -> float | None:
        if self.cuda:
            return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 1e9
        return None


def format_mfu(value: float) -> str:
    """A fixed-point fraction (never 1e-05: the cost plan reads digits and dots only)."""
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.8f}"


def load_config(path: str) -> dict:
    """The configuration with the schema's defaults filled (no jsonschema needed: the
    configuration is validated by the workflow, not here)."""
    import yaml

    from polneurons.config import fill_defaults, load_schema

    schema = load_schema()
    config = yaml.safe_load(Path(path).read_text()) or {}
    return fill_defaults(config, schema, schema)


def requested_mem_gb(config: dict, params_b: float) -> float:
    """What a model job asks for at its first attempt (workflow/rules/common.smk mem_mb), GB."""
    r = config["resources"]
    return (r["mem_mb_base"] + r["mem_mb_per_b_params"] * params_b) / 1000


def schema_strategies() -> list[str]:
    from polneurons.config import load_schema

    return load_schema()["properties"]["inhibitft"]["properties"]["strategies"]["items"]["enum"]


def long_prompts(tokenizer, n: int, tokens: int) -> tuple[list[str], int]:
    """n deterministic prompts (common.make_prompts) extended to about `tokens` tokens each
    (the cost plan's assumed prompt), and their total token count."""
    prompts = []
    for i, prompt in enumerate(common.make_prompts(n)):
        j = i
        while len(tokenizer(prompt)["input_ids"]) < tokens:
            prompt += " " + common.FIXTURE_TEXT[j % len(common.FIXTURE_TEXT)]
            j += 1
        prompts.append(prompt)
    return prompts, sum(len(ids) for ids in tokenizer(prompts)["input_ids"])


def run_section(report, clock, memory, name, title, fn, skip_reason=None):
    """One section: its heading, then fn()'s lines, or why it was skipped or how it failed."""
    need = clock.budgets[name]
    report.add("", f"## {title}", "")
    if name in clock.skip:
        report.add("- Skipped: --skip asked for it")
        return None
    if skip_reason:
        report.add(f"- Skipped: {skip_reason}")
        return None
    if clock.left() < need:
        report.add(
            f"- Skipped: out of time ({clock.left():.0f} s left of the {clock.total_s:.0f} s "
            f"budget; this section's budget is {need:.0f} s)"
        )
        return None
    start = time.perf_counter()
    clock.section_end = start + need
    memory.reset()
    try:
        result = fn()
    except Exception as exc:  # a failed section is reported; the next one still runs
        traceback.print_exc()
        message = " ".join(str(exc).split())[:300]
        report.add(f"- Failed: {type(exc).__name__}: {message}")
        result = None
        if memory.cuda:
            torch.cuda.empty_cache()
    seconds = time.perf_counter() - start
    over = " (OVER its budget)" if seconds > need else ""
    report.add(f"- Section time: {seconds:.1f} s of its {need:.0f} s budget{over}")
    return result


def matmul_peak(args, report) -> float:
    """FLOP/s of an n x n x n matmul in args.dtype on args.device (best of timed repeats)."""
    n, seconds = args.settings["matmul_n"], args.settings["matmul_s"]
    dtype = getattr(torch, args.dtype)
    a, b, c = (torch.randn(n, n, device=args.device, dtype=dtype) for _ in range(3))

    def multiply(times: int) -> None:
        for _ in range(times):
            torch.matmul(a, b, out=c)  # into one tensor: no allocation per product

    multiply(3)  # warm-up (cuBLAS handles, clocks)
    # products per timed repeat: about a fifth of the section's time each
    one = bench_dump.timed(lambda: multiply(1), args.device)
    per_repeat = min(2000, max(1, int(seconds / 5 / max(one, 1e-6))))
    best = min(bench_dump.timed(lambda: multiply(per_repeat), args.device) for _ in range(5))
    best /= per_repeat
    peak = 2 * n**3 / best
    report.add(
        f"- {n} x {n} x {n} matmul in {args.dtype}, best of 5 repeats of {per_repeat}: "
        f"**{peak / 1e12:,.2f} TFLOP/s** (the yardstick of every MFU below)"
    )
    return peak


def stage_memory(report, memory, stages, stage, requested_gb):
    peak = memory.peak_gb()
    stages.append((stage, peak))
    verdict = "fits" if peak <= requested_gb else "exceeds"
    report.add(
        f"- {memory.label}: {peak:.2f} GB; the config asks {requested_gb:.1f} GB per job: {verdict}"
    )


def mfu_line(report, label, flops_per_token, tokens_per_s, peak):
    """`MFU (label): 0.1234` on a line of its own (polneurons.cost.measured_mfu reads it)."""
    mfu = flops_per_token * tokens_per_s / peak
    report.add(f"MFU ({label}): {format_mfu(mfu)}", "")
    return mfu


def dump_section(args, ctx, report):
    from polneurons.activations import dump_activations

    tokenizer, config = ctx.tokenizer, ctx.config
    model = common.random_lora(ctx.base, ["q_proj", "v_proj"]).to(args.device).eval()
    try:
        settings = config["neurons"]
        batch = args.settings["batch_size"] or settings["batch_size"]
        prompts, n_tokens = long_prompts(
            tokenizer, args.settings["dump_prompts"], args.settings["prompt_tokens"]
        )
        ids = [f"p{i:05d}" for i in range(len(prompts))]
        kwargs = dict(
            site=settings["site"],
            batch_size=batch,
            shard_size=settings["shard_size"],
        )
        with tempfile.TemporaryDirectory() as tmp:
            warm = args.settings["warmup_prompts"] or batch
            dump_activations(
                model, tokenizer, prompts[:warm], ids[:warm], Path(tmp) / "w", **kwargs
            )
            seconds = bench_dump.timed(
                lambda: dump_activations(model, tokenizer, prompts, ids, Path(tmp) / "d", **kwargs),
                args.device,
            )
        rate = n_tokens / seconds
        report.add(
            f"- {len(prompts)} prompts, {n_tokens} prompt tokens (about "
            f"{args.settings['prompt_tokens']} each), site {settings['site']}, batch "
            f"{batch}, shard {settings['shard_size']}; fresh random LoRA r16 on "
            f"q_proj, v_proj; after a warm-up dump of {warm} prompt{'s' * (warm > 1)}",
            f"- {seconds:.2f} s: **{rate:,.0f} prompt tokens/s** (each token read by M_s and M0: "
            "4 x params FLOPs)",
        )
        report.add("")
        mfu_line(report, "activation dump", 4 * ctx.params, rate, ctx.peak)
        stage_memory(report, ctx.memory, ctx.stages, "activation dump", ctx.requested_gb)
    finally:
        ctx.base = model.unload()


def generation_section(args, ctx, report):
    from polneurons.generation import greedy_generate
    from polneurons.patching import patched_generate

    tokenizer, config = ctx.tokenizer, ctx.config
    model = common.random_lora(ctx.base, bench_patching.MLP_TARGETS).to(args.device).eval()
    try:
        batch = args.settings["batch_size"] or config["generation"]["batch_size"]
        new_tokens = args.settings["new_tokens"] or config["generation"]["max_new_tokens"]
        n = max(batch, args.settings["gen_prompts"] // batch * batch)
        prompts, prompt_tokens = long_prompts(tokenizer, n, args.settings["prompt_tokens"])
        site = config["neurons"]["site"]
        neurons = common.random_neurons(model, site, 0.05)
        common_kw = dict(max_new_tokens=new_tokens, batch_size=batch)
        warm = args.settings["warmup_prompts"] or batch
        greedy_generate(model, tokenizer, prompts[:warm], max_new_tokens=2)  # warm-up
        methods = {
            "generation": (lambda: greedy_generate(model, tokenizer, prompts, **common_kw), 1, 2),
            "patched generation": (
                lambda: patched_generate(model, tokenizer, prompts, neurons, site, **common_kw),
                2,
                4,
            ),
        }
        report.add(
            f"- {n} prompts ({prompt_tokens} prompt tokens), batch {batch}, up to {new_tokens} "
            f"new tokens; fresh random LoRA r16 on the MLP projections; patched: "
            f"{sum(len(v) for v in neurons.values())} neurons at {site} (5% of each layer); "
            "tokens = prompt tokens + the tokens generated (every row of a batch runs every step)",
            "",
            "| method | seconds | decoding steps | tokens/s | FLOPs/token | ms / step |",
            "|---|---:|---:|---:|---:|---:|",
        )
        rows = {}
        seconds = 0.0
        for name, (run, forwards_per_step, flops_factor) in methods.items():
            if not ctx.clock.allows(1.2 * forwards_per_step * seconds):  # seconds: the last run
                report.add(f"| {name} | skipped: out of this section's time | | | | |")
                continue
            seconds, steps = bench_patching.timed(run, model, args.device, forwards_per_step)
            # each step (the prefill's included) gives every row of its batch one new token
            tokens = prompt_tokens + steps * batch
            rate = tokens / seconds
            rows[name] = (rate, flops_factor)
            report.add(
                f"| {name} | {seconds:.2f} | {steps} | {rate:,.0f} | {flops_factor} x params | "
                f"{1000 * seconds / max(1, steps):.1f} |"
            )
        report.add("")
        for name, (rate, flops_factor) in rows.items():
            mfu_line(report, name, flops_factor * ctx.params, rate, ctx.peak)
        stage_memory(
            report, ctx.memory, ctx.stages, "generation (plain and patched)", ctx.requested_gb
        )
    finally:
        ctx.base = model.unload()


def readout_section(args, ctx, report):
    """The teacher-forced readout: M0, M_s and three sets in both directions on the config's
    readout batch, against one plain teacher-forced pass (bench_readout's measure)."""
    from polneurons.likelihood import completion_mean_logprobs, pair_sequences
    from polneurons.readout import intervened_stance

    tokenizer, config = ctx.tokenizer, ctx.config
    model = common.random_lora(ctx.base, bench_patching.MLP_TARGETS).to(args.device).eval()
    try:
        batch = args.settings["batch_size"] or config["patching"]["readout_batch_size"]
        answer = args.settings["new_tokens"] or config["generation"]["max_new_tokens"]
        n_pairs = max(1, args.settings["gen_prompts"] // 2)
        prompts, prompt_tokens = long_prompts(
            tokenizer, n_pairs + 2, args.settings["prompt_tokens"]
        )
        pairs = [(prompts[i], " " + prompts[i + 1], " " + prompts[i + 2]) for i in range(n_pairs)]
        site = config["neurons"]["site"]
        sets = {f"set {k}": common.random_neurons(model, site, 0.05 * (k + 1)) for k in range(3)}
        kw = dict(batch_size=batch, add_special_tokens=True, answer_tokens=answer)
        plain = bench_dump.timed(
            lambda: completion_mean_logprobs(model, tokenizer, pair_sequences(pairs), **kw),
            args.device,
        )
        seconds = bench_dump.timed(
            lambda: intervened_stance(model, tokenizer, pairs, site, sets, **kw), args.device
        )
        forwards = 2 + 2 * len(sets)
        tokens = 2 * n_pairs * (prompt_tokens / (n_pairs + 2) + answer) * forwards
        report.add(
            f"- {n_pairs} pairs, answers cut to {answer} tokens, batch {batch}, site {site}, "
            f"{len(sets)} random sets (5-15% of each layer): {forwards} forwards per batch",
            f"- plain teacher-forced pass {plain:.2f} s; readout {seconds:.2f} s: "
            f"**{seconds / forwards / plain:.2f}x a plain pass per forward** (goal <= 1.2x), "
            f"about {tokens / seconds:,.0f} tokens/s",
            "",
        )
        mfu_line(report, "teacher-forced readout", 2 * ctx.params, tokens / seconds, ctx.peak)
        stage_memory(report, ctx.memory, ctx.stages, "teacher-forced readout", ctx.requested_gb)
    finally:
        ctx.base = model.unload()


def training_section(args, ctx, report):
    from polneurons.config import inhibitft_finetune
    from polneurons.finetune import resolve_config

    config = ctx.config
    site = config["neurons"]["site"]
    # labelled as the cost plan names each workload, so that it reads their MFU lines
    variants = {cost.workload("finetune"): (resolve_config(dict(config["finetune"])), None)}
    inhibit_cfg = resolve_config(inhibitft_finetune(config))
    for strategy in schema_strategies():
        variants[cost.workload("inhibitft", strategy)] = (inhibit_cfg, strategy)
    warmup, timed_steps = args.settings["warmup_steps"], args.settings["timed_steps"]
    first = variants[cost.workload("finetune")][0]
    report.add(
        f"- {warmup} warm-up and {timed_steps} timed optimizer steps per variant (median); "
        f"AdamW; the batch: batch_size x grad_accum examples of max_length tokens; InhibitFT: "
        f"5% of each layer's {site} neurons, random; "
        f"finetune targets {', '.join(first['lora']['target_modules'])}, InhibitFT targets "
        f"{', '.join(inhibit_cfg['lora']['target_modules'])}",
        "",
        "| variant | batch x tokens | median s / step | tokens/s | of the matmul peak (6 x "
        "params / token, 8 x with the anchor) | "
        + ctx.memory.label
        + " GB | verdict vs the config's "
        f"{ctx.requested_gb:.1f} GB |",
        "|---|---:|---:|---:|---:|---:|---|",
    )
    last = 0.0  # wall time of the last variant: about what the next one needs
    rates = {}
    for name, (cfg, strategy) in variants.items():
        if not ctx.clock.allows(1.2 * last):
            report.add(f"| {name} | skipped: out of this section's time | | | | | |")
            continue
        started = time.perf_counter()
        try:
            seconds, seq_len, peak = train_variant(args, ctx, cfg, strategy)
        except Exception as exc:  # the next variant still runs
            traceback.print_exc()
            report.add(
                f"| {name} | failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]} | | | | | |"
            )
            continue
        last = time.perf_counter() - started
        batch = cfg["batch_size"] * cfg["grad_accum"]
        rate = batch * seq_len / seconds
        flops_per_token = cost.training_flops_factor(strategy) * ctx.params
        rates[name] = (rate, flops_per_token)
        ctx.stages.append((name, peak))
        report.add(
            f"| {name} | {batch} x {seq_len} | {seconds:.3f} | {rate:,.0f} | "
            f"{format_mfu(flops_per_token * rate / ctx.peak)} | {peak:.2f} | "
            f"{'fits' if peak <= ctx.requested_gb else 'exceeds'} |"
        )
    report.add("")
    for name, (rate, flops_per_token) in rates.items():
        mfu_line(report, name, flops_per_token, rate, ctx.peak)


def train_variant(args, ctx, cfg: dict, strategy: str | None) -> tuple[float, int, float]:
    """(median seconds per optimizer step, tokens per example, peak memory GB) of training
    ctx.base as the workflow does (polneurons.finetune: LoRA added, InhibitFT's strategy on
    random neurons, train_step); the LoRA is removed again after."""
    from transformers import get_linear_schedule_with_warmup

    from polneurons.finetune import train_step, trainable_model

    ctx.memory.reset()
    site = ctx.config["neurons"]["site"]
    seq_len = args.settings["seq_len"] or cfg["max_length"]
    shape = SimpleNamespace(seq_len=seq_len, batch_size=cfg["batch_size"], device=args.device)
    inhibit = None
    if strategy:
        neurons = common.random_neurons(ctx.base, site, 0.05)
        inhibit = {"strategy": strategy, "site": site, "neurons": neurons}
        inhibit["anchor_weight"] = ctx.config["inhibitft"]["anchor_weight"]
    model, inhibition = trainable_model(ctx.base, cfg, inhibit)
    try:
        model.to(args.device).train()
        group = [bench_inhibit_step.make_batch(ctx.tokenizer, shape)] * cfg["grad_accum"]
        if inhibition is not None and inhibition.anchored:  # the base RMS, as run_steps does
            inhibition.calibrate(group)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        scheduler = get_linear_schedule_with_warmup(optimizer, cfg["warmup_steps"], 1000)

        def step():
            train_step(model, group, optimizer, scheduler, inhibition)

        warmup, timed_steps = args.settings["warmup_steps"], args.settings["timed_steps"]
        with inhibition.active() if inhibition else contextlib.nullcontext():
            times = [bench_dump.timed(step, args.device) for _ in range(warmup + timed_steps)]
        return statistics.median(times[warmup:]), seq_len, ctx.memory.peak_gb()
    finally:
        model.eval()
        ctx.base = model.unload() if cfg["method"] == "lora" else model


def memory_section(args, ctx, report):
    total = ctx.memory.total_gb()
    report.add(
        f"- The config asks mem_mb_base + mem_mb_per_b_params x params_b = "
        f"{ctx.config['resources']['mem_mb_base']} + {ctx.config['resources']['mem_mb_per_b_params']}"
        f" x {ctx.params_b:g} MB = {ctx.requested_gb:.1f} GB per model job ({ctx.registry_name}; "
        "workflow/rules/common.smk mem_mb at the first attempt; the scheduler's job memory)",
        f"- Device memory: {f'{total:.1f} GB' if total else 'none (CPU run: peak RSS instead)'}",
        "",
        f"| stage | {ctx.memory.label} GB | requested GB | verdict |",
        "|---|---:|---:|---|",
        *(
            f"| {stage} | {peak:.2f} | {ctx.requested_gb:.1f} | "
            f"{'fits' if peak <= ctx.requested_gb else 'exceeds'} |"
            for stage, peak in ctx.stages
        ),
    )
    if not ctx.stages:
        report.add("| (no stage measured) | | | |")


def tests_section(args, ctx, report):
    tests = args.tests
    cuda_use = [
        path.name
        for path in sorted((REPO / "tests").glob("test_*.py"))
        if CUDA_DEVICE_USE.search(path.read_text())
    ]
    timeout = min(args.settings["tests_timeout_s"], max(5, ctx.clock.left() - 5))
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *tests]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    report.add(
        f"- Selected: {', '.join(f'`{t}`' for t in tests) or '(none)'}",
        f"- Ran on: this machine, {common.device_name(args.device)} "
        f"(torch.cuda.is_available() = {torch.cuda.is_available()}); tests that put a model or "
        f"tensor on a CUDA device: {', '.join(cuda_use) or 'none (they run tiny models on CPU)'}",
        f"- Command: `{shlex.join(['python', *command[1:]])}` (timeout {timeout:.0f} s)",
    )
    if not tests:
        report.add("- Skipped: no test selected")
        return
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        report.add(f"- Result: stopped after {timeout:.0f} s (timeout), no summary")
        return
    lines = done.stdout.splitlines()
    outcomes = [
        line for line in lines if re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", line)
    ]
    summary = next(
        (
            line.strip("= ")
            for line in reversed(lines)
            if re.search(r"\d+ (passed|failed|error|skipped)", line)
        ),
        f"no summary (exit {done.returncode})",
    )
    report.add(f"- Result: {summary} (exit {done.returncode})", "", "```", *outcomes, "```")
    if done.returncode not in (0, 5):
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        report.add("", "Output tail:", "", "```", *tail, "```")


def build_model(args, ctx, report):
    source = SimpleNamespace(
        tiny=False,
        model=None,
        random_shape=ctx.shape,
        dtype=args.dtype,
        device=args.device,
        shape_overrides={"num_hidden_layers": args.settings["layers"]}
        if args.settings["layers"]
        else {},
    )
    start = time.perf_counter()
    ctx.base, ctx.tokenizer = common.load_base(source)
    bench_dump.synchronize(args.device)
    ctx.params = sum(p.numel() for p in ctx.base.parameters())
    layers = ctx.base.config.num_hidden_layers
    report.add(
        f"- {ctx.shape} shape, random weights (seed 0), {args.dtype}, {layers} decoder layers"
        + (
            f" (of {common.RANDOM_SHAPES[ctx.shape]['num_hidden_layers']})"
            if args.settings["layers"]
            else ""
        )
        + f": {ctx.params / 1e9:.3f} B parameters, built on {args.device} in "
        f"{time.perf_counter() - start:.1f} s; prompts tokenized by the tests' tiny tokenizer",
    )
    stage_memory(report, ctx.memory, ctx.stages, "model weights", ctx.requested_gb)


def command_line(argv: list[str]) -> str:
    """The command as benchmarks/gpu_check.sh takes it, the output folder shown as OUT (the
    report holds no path of the machine that ran it)."""
    rest, skip = [], False
    for arg in argv:
        if skip or arg == "--out":
            skip = not skip
            continue
        if not arg.startswith("--out="):
            rest.append(arg)
    return shlex.join(["benchmarks/gpu_check.sh", "OUT", *rest])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = Clock(args.budget_s, args.budgets, args.skip)
    report = Report(Path(args.out) / "gpu.md")
    memory = Memory(args.device)
    config = load_config(args.config)
    shape = args.settings["shape"]
    registry_name = REGISTRY_NAME[shape]
    params_b = config["model_registry"].get(registry_name, {}).get("params_b") or 0
    ctx = SimpleNamespace(
        config=config,
        shape=shape,
        registry_name=registry_name,
        params_b=params_b,
        requested_gb=requested_mem_gb(config, params_b),
        clock=clock,
        memory=memory,
        stages=[],
        base=None,
        peak=None,
    )
    machine = SimpleNamespace(device=args.device, threads=args.threads)
    report.add(
        "# Device check: the paper configuration's model jobs on one device",
        "",
        "- Status: RUNNING (a partial report: the run was cut short if this line stays)",
        common.machine_line(machine),
        f"- Mode: {'CPU smoke (small shapes: checks the code paths, not speed)' if args.smoke else 'full (GPU)'}; "
        f"dtype {args.dtype}; config {Path(args.config).relative_to(REPO) if Path(args.config).is_relative_to(REPO) else args.config}; "
        f"time budget {args.budget_s:.0f} s",
        f"- command: `{command_line(argv)}`",
    )
    status_line = 2
    # sections in order; each needs what the ones before it built
    ctx.peak = run_section(
        report, clock, memory, "matmul", "Matmul peak", lambda: matmul_peak(args, report)
    )
    run_section(report, clock, memory, "model", "Model", lambda: build_model(args, ctx, report))
    no_model = None if ctx.base is not None else "the model was not built (see Model)"
    no_peak = None if ctx.peak else "no matmul peak was measured (see Matmul peak)"
    run_section(
        report, clock, memory, "dump", "Activation dump",
        lambda: dump_section(args, ctx, report), no_model or no_peak,
    )  # fmt: skip
    run_section(
        report, clock, memory, "generation", "Generation: plain and lockstep patched",
        lambda: generation_section(args, ctx, report), no_model or no_peak,
    )  # fmt: skip
    run_section(
        report, clock, memory, "readout", "Teacher-forced readout",
        lambda: readout_section(args, ctx, report), no_model or no_peak,
    )  # fmt: skip
    run_section(
        report, clock, memory, "training", "Training steps: LoRA and InhibitFT",
        lambda: training_section(args, ctx, report), no_model or no_peak,
    )  # fmt: skip
    ctx.base = None
    report.add("", "## Memory against the config's resources", "")
    memory_section(args, ctx, report)
    run_section(
        report, clock, memory, "tests", "Unit tests with a CUDA path",
        lambda: tests_section(args, ctx, report),
    )  # fmt: skip
    report.set(
        status_line,
        f"- Status: complete in {clock.elapsed():.0f} s (budget {clock.total_s:.0f} s); "
        "the cost plan reads each workload's `MFU` line (polneurons-cost --gpu-report)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
