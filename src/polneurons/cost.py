"""The cost plan of a configuration (README "Where to run it"): per stage, the model jobs, the
sequences and tokens they process, the FLOPs, each job's weights and requested memory, and
GPU-hours at a stated throughput.

Everything is counted from the plan (`plan.Plan`: the same runs the rules build) and the config;
what a config cannot say is an assumption, named in the output: the tokens of a prompt and of
an IdeoINST answer (`ASSUMED_TOKENS`), and the throughput (the model-FLOPs utilisation of an
H100's bf16 peak, `ASSUMED_MFU`, unless a GPU check measured it). A GPU check's report gives
one `MFU (<workload>): x` line per workload it timed; each job runs at the MFU of its own
workload (`Job.workload`), and a workload the check did not time at the smallest one measured.
FLOPs are 2 x parameters per token a forward pass reads or writes, 6 x per trained token (a LoRA step costs less: this is a
bound; 8 x with InhibitFT's anchor, whose step adds a forward of M0), and a lockstep patched
generation (patching, and restore) runs two models.

    polneurons-cost --configfile configs/paper.yaml
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from polneurons import kinds
from polneurons.data import EVAL_SET_SIZES, NEUTRAL_OUTSIDE_EVAL, PAIRS_OUTSIDE_EVAL
from polneurons.plan import Plan

H100_BF16_PEAK_FLOPS = 989e12  # dense bf16 tensor-core peak of an H100 SXM (NVIDIA's datasheet)
ASSUMED_MFU = 0.40  # share of that peak the jobs reach: an assumption until measured on a GPU
# tokens a config does not fix: the answer template with its instruction, an IdeoINST answer
ASSUMED_TOKENS = {"prompt": 128, "answer": 200}
# the rules that load a model, in DAG order (the stages of the plan)
MODEL_RULES = (
    "finetune",
    "inhibitft",
    "generate",
    "patch_generate",
    "restore_generate",
    "score_likelihood",
    "readout",
    "dump_activations",
    "dump_moved",
    "judge",
)


ASSUMED_HF_JUDGE_B = 7.6  # the hf judge's size (the schema's default, Qwen2.5-7B-Instruct)

# the workload of each model rule, as the GPU check labels its `MFU (...)` lines
# (benchmarks/gpu_check.py); InhibitFT's is its strategy's step (`workload`)
RULE_WORKLOADS = {
    "finetune": "LoRA step (finetune)",
    "generate": "generation",
    "judge": "generation",
    "patch_generate": "patched generation",
    "restore_generate": "patched generation",
    "score_likelihood": "teacher-forced readout",
    "readout": "teacher-forced readout",
    "dump_activations": "activation dump",
    "dump_moved": "activation dump",
}


def training_flops_factor(strategy: str | None = None) -> int:
    """FLOPs per parameter and trained token: 6 (forward and backward; a bound for LoRA), 8
    with InhibitFT's anchor, whose step adds a forward of M0 (adapter off), at most the whole
    model's."""
    return 8 if strategy == "anchor" else 6


def workload(rule: str, strategy: str | None = None) -> str:
    """The GPU check's label of what a job of this rule runs (`RULE_WORKLOADS`; an InhibitFT
    job: its strategy's step)."""
    return f"InhibitFT step ({strategy})" if rule == "inhibitft" else RULE_WORKLOADS[rule]


@dataclass(frozen=True)
class Job:
    """One model job of the plan: its rule, model, sequences and tokens, FLOPs."""

    rule: str
    model: str
    params_b: float
    sequences: int
    tokens: int
    flops: float
    workload: str  # the GPU check's label of what it runs (`workload`)


def eval_sequences(config: dict, test_sets) -> int:
    """Prompts of these test sets the config answers (data.eval_prompts of each, at most all)."""
    limit = config["data"]["eval_prompts"]
    return sum(min(limit or EVAL_SET_SIZES[s], EVAL_SET_SIZES[s]) for s in test_sets)


def training_examples(config: dict, source: str) -> int:
    """Examples one training run of `source` draws: data.train_examples, else its whole
    training pool (what data.topic_pools leaves after the held-out pools)."""
    from polneurons.config import pool_sizes

    sizes = pool_sizes(config)
    held = (
        sizes["loglik_pairs"]
        + min(sizes["perplexity_texts"], NEUTRAL_OUTSIDE_EVAL[source])
        + sizes["localize_prompts"]
        + sizes["judge_pairs"]
        + sizes["readout_pairs"]
    )
    evaluation = 0 if sizes["holdout_eval"] else EVAL_SET_SIZES[source]
    pool = PAIRS_OUTSIDE_EVAL[source] - held + evaluation
    wanted = config["data"]["train_examples"]
    return min(wanted, pool) if wanted else pool


def training_sequences(settings: dict, examples: int) -> int:
    """Sequences one training run processes: its steps times the effective batch."""
    batch = settings["batch_size"] * settings["grad_accum"]
    steps = math.ceil(settings["epochs"] * math.ceil(examples / batch))
    if settings["max_steps"]:
        steps = min(steps, settings["max_steps"])
    return steps * batch


def _family(run_id: str) -> str:
    return kinds.parse_kind(run_id.rsplit("/", 1)[1]).family


def _moved_runs(plan: Plan) -> list[str]:
    """The runs dumped on their source topic to measure how far the inhibited neurons moved:
    each InhibitFT run and its vanilla control (the same replicate)."""
    moved = []
    for model, lean, src, kind in plan.inhibition_effect_runs():
        vanilla = kinds.with_replicate(plan.control_kind, kinds.parse_kind(kind).replicate)
        moved += [f"{model}/{lean}/{src}/{kind}", f"{model}/{lean}/{src}/{vanilla}"]
    return list(dict.fromkeys(moved))


def plan_jobs(config: dict) -> list[Job]:
    """Every model job of the configuration with what it processes (module docstring)."""
    from polneurons.config import inhibitft_finetune, pool_sizes

    plan = Plan(config)
    tokens = ASSUMED_TOKENS
    topics = config["topics"]
    new_tokens = config["generation"]["max_new_tokens"]
    answered = eval_sequences(config, [*topics, *config["extra_sets"]])
    localize = config["data"]["eval_prompts"] or 100
    loglik = 2 * config["data"]["loglik_pairs"] * len(topics)
    perplexity = config["perplexity"]["texts"] * len(topics)
    jobs: list[Job] = []

    def add(rule, run_id, sequences, per_sequence, flops_per_token, params_b=None):
        model = run_id.split("/", 1)[0]
        b = params_b or config["model_registry"][model]["params_b"]
        n = sequences * per_sequence
        kind = run_id.rsplit("/", 1)[1]
        label = workload(rule, kinds.parse_kind(kind).strategy if rule == "inhibitft" else None)
        jobs.append(Job(rule, model, b, sequences, n, flops_per_token * b * 1e9 * n, label))

    for run in plan.trained():
        family, source = _family(run), run.split("/")[2]
        rule = "finetune" if family in ("ft", "ftctl", "null") else "inhibitft"
        settings = config["finetune"] if family in ("ft", "null") else inhibitft_finetune(config)
        sequences = training_sequences(settings, training_examples(config, source))
        per_sequence = min(settings["max_length"], tokens["prompt"] + tokens["answer"])
        kind = kinds.parse_kind(run.rsplit("/", 1)[1])
        add(rule, run, sequences, per_sequence, training_flops_factor(kind.strategy))
    for run in plan.judged():
        kind = run.rsplit("/", 1)[1]
        if kind.startswith("restore-"):  # lockstep: M0 donates, M_s generates, every step
            add("restore_generate", run, answered, tokens["prompt"] + new_tokens, 4)
            continue
        if not kind.startswith("patch-"):
            add("generate", run, answered, tokens["prompt"] + new_tokens, 2)
            continue
        groups = kinds.answered_sets(kind, topics, [*topics, *config["extra_sets"]])
        sequences = sum(eval_sequences(config, test_sets) for _, test_sets in groups)
        # lockstep: M_s and the patched M0 both run every step
        add("patch_generate", run, sequences, tokens["prompt"] + new_tokens, 4)
    mean_scored = (
        loglik * (tokens["prompt"] + tokens["answer"])
        + perplexity * config["perplexity"]["max_length"]
    ) // max(1, loglik + perplexity)
    for run in plan.trained() + plan.runs([], base=True):
        add("score_likelihood", run, loglik + perplexity, mean_scored, 2)
    readout_sequences = 2 * pool_sizes(config)["readout_pairs"]  # one topic's pairs
    answer = min(tokens["answer"], config["patching"]["readout_answer_tokens"] or tokens["answer"])
    for run in plan.readout_runs():
        for _ in topics:
            # M0 and M_s once, then every set (S_t's own random draws and, with crossed, the
            # other topics' S_t included) in both directions
            sets = len(plan.readout_kinds)
            if kinds.patch_kind("specific") in plan.readout_kinds:
                sets += config["controls"]["seeds"]
            if plan.crossed_readout:
                sets += len(topics) - 1
            passes = 2 + 2 * sets
            add("readout", run, readout_sequences * passes, tokens["prompt"] + answer, 2)
    for run in plan.localized(["ft", *plan.null_kinds]):
        for _ in topics:  # M_s and M0, teacher-forced over the same prompts
            add("dump_activations", run, localize, tokens["prompt"], 4)
    for run in _moved_runs(plan):
        add("dump_moved", run, localize, tokens["prompt"], 4)
    if config["judge"]["backend"] == "hf":
        for run in plan.judged():
            per_answer = tokens["prompt"] + new_tokens + 8  # the judge prompt holds the answer
            add("judge", run, answered, per_answer, 2, ASSUMED_HF_JUDGE_B)
    return jobs


@dataclass(frozen=True)
class Throughput:
    """The model-FLOPs utilisation each workload runs at: a GPU check's `MFU (<workload>)`
    lines, the smallest of them for a workload it did not time (the conservative plan), or
    ASSUMED_MFU for every workload when nothing was measured.

    >>> Throughput({"generation": 0.2, "activation dump": 0.5}).mfu("activation dump")
    (0.5, 'measured')
    >>> Throughput({"generation": 0.2}).mfu("teacher-forced readout")
    (0.2, 'smallest measured')
    """

    measured: dict[str, float]

    def mfu(self, workload: str) -> tuple[float, str]:
        """(MFU, where it comes from) of this workload."""
        if workload in self.measured:
            return self.measured[workload], "measured"
        if self.measured:
            return min(self.measured.values()), "smallest measured"
        return ASSUMED_MFU, "assumed"


def cost_table(config: dict, throughput: Throughput) -> list[dict]:
    """Per (rule, model): jobs, sequences, tokens, PFLOPs, bf16 weights, GPU-hours (each job at
    its workload's MFU), and where that MFU comes from."""
    groups: dict[tuple, list[Job]] = {}
    for job in plan_jobs(config):
        groups.setdefault((job.rule, job.model), []).append(job)
    rows = []
    for (rule, model), group in groups.items():
        flops = sum(j.flops for j in group)
        mfus = [throughput.mfu(j.workload) for j in group]
        seconds = sum(
            j.flops / (H100_BF16_PEAK_FLOPS * mfu) for j, (mfu, _) in zip(group, mfus, strict=True)
        )
        rows.append(
            dict(
                rule=rule,
                model=model,
                params_b=group[0].params_b,
                jobs=len(group),
                sequences=sum(j.sequences for j in group),
                tokens=sum(j.tokens for j in group),
                pflops=flops / 1e15,
                weights_gb=2 * group[0].params_b,
                gpu_hours=seconds / 3600,
                mfu=", ".join(dict.fromkeys(f"{m:.2f} {source}" for m, source in mfus)),
            )
        )
    return rows


def measured_mfus(report: Path) -> dict[str, float]:
    """{workload: MFU} of a GPU check's report (its `MFU (<workload>): 0.43` lines); empty
    without a report."""
    if not report.is_file():
        return {}
    found = re.findall(r"^MFU \((.+)\):\s*([0-9.]+)\s*$", report.read_text(), re.M)
    return {label: float(value) for label, value in found}


def requested_mem_gb(config: dict, params_b: float) -> float:
    r = config["resources"]
    return (r["mem_mb_base"] + r["mem_mb_per_b_params"] * params_b) / 1000


def format_plan(config: dict, throughput: Throughput) -> str:
    rows = cost_table(config, throughput)
    lines = [
        "| rule | model | B params | jobs | sequences | tokens | PFLOPs | bf16 weights GB | "
        "requested mem GB | MFU | GPU-hours |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rule']} | {r['model']} | {r['params_b']:g} | {r['jobs']:,} | {r['sequences']:,} | "
            f"{r['tokens']:,} | {r['pflops']:,.1f} | {r['weights_gb']:.1f} | "
            f"{requested_mem_gb(config, r['params_b']):.1f} | {r['mfu']} | {r['gpu_hours']:,.2f} |"
        )
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    lines += ["", "| stage | jobs | tokens | PFLOPs | GPU-hours |", "|---|---|---|---|---|"]
    for rule, group in by_rule.items():
        lines.append(
            f"| {rule} | {sum(r['jobs'] for r in group):,} | "
            f"{sum(r['tokens'] for r in group):,} | {sum(r['pflops'] for r in group):,.1f} | "
            f"{sum(r['gpu_hours'] for r in group):,.2f} |"
        )
    total = sum(r["gpu_hours"] for r in rows)
    lines.append(
        f"| **total** | {sum(r['jobs'] for r in rows):,} | {sum(r['tokens'] for r in rows):,} | "
        f"{sum(r['pflops'] for r in rows):,.1f} | **{total:,.1f}** |"
    )
    source = (
        "per workload as the GPU check measured it (its `MFU` lines; a workload it did not "
        "time at the smallest of them)"
        if throughput.measured
        else f"ASSUMED: {ASSUMED_MFU:.0%} of an H100's bf16 peak for every workload, not measured"
    )
    lines += [
        "",
        f"Throughput: {source}. Tokens per prompt and per IdeoINST answer ASSUMED "
        f"({ASSUMED_TOKENS['prompt']} and {ASSUMED_TOKENS['answer']}); training FLOPs are "
        "6 x params per token (an upper bound for LoRA); a patched generation runs two models; "
        "CPU-only rules (tables, localization, random draws) are not counted. "
        + (
            "The openai judge makes one API call per distinct answer, no GPU."
            if config["judge"]["backend"] == "openai"
            else ""
        ),
    ]
    return "\n".join(lines)


def load_stack(configfiles, overrides=()) -> dict:
    """The configuration these files make, stacked as Snakemake stacks them, validated."""
    from polneurons.config import check_stack, merge_overlay, validate_config

    check_stack(configfiles)
    config: dict = {}
    for path in configfiles:
        merge_overlay(config, yaml.safe_load(Path(path).read_text()) or {})
    for override in overrides:
        key, _, value = override.partition("=")
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = yaml.safe_load(value)
    return validate_config(config)


def main(argv=None) -> int:
    from polneurons.errors import PolneuronsError

    parser = argparse.ArgumentParser(prog="polneurons-cost", description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", nargs="+", default=["config.yaml"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gpu-report", default="benchmarks/results/gpu.md")
    args = parser.parse_args(argv)
    try:
        config = load_stack(args.configfile, args.set)
    except PolneuronsError as exc:
        print(f"polneurons config error: {exc}", file=sys.stderr)
        return 1
    print(format_plan(config, Throughput(measured_mfus(Path(args.gpu_report)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
