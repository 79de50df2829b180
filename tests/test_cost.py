"""The cost plan (polneurons.cost): its job counts are the workflow's own (checked against
`snakemake -n`), its FLOPs follow the stated formula, and a measured throughput replaces the
assumed one."""

from __future__ import annotations

import re

import pytest
import yaml
from workflow_helpers import REPO, TINY_CONFIG, dry_run_counts

from polneurons import cost
from polneurons.config import validate_config

TINY_OVERRIDES = ["--config", "model_registry={tiny: {path: some-org/tiny}}"]


def plan_counts(config: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in cost.plan_jobs(config):
        counts[job.rule] = counts.get(job.rule, 0) + 1
    return counts


@pytest.mark.parametrize("name", ["tiny", "embedded"])
def test_the_plan_counts_every_model_job_the_dry_run_lists(name, tmp_path):
    if name == "tiny":
        raw = yaml.safe_load(TINY_CONFIG.read_text())
        raw["model_registry"]["tiny"]["path"] = "some-org/tiny"
        args = ["--configfile", str(TINY_CONFIG), *TINY_OVERRIDES]
    else:
        raw = yaml.safe_load((REPO / "config.yaml").read_text())
        args = ["--config"]
    dry = dry_run_counts(*args, f"results={tmp_path}/results")
    planned = plan_counts(validate_config(raw))
    assert planned, "no model job planned"
    for rule in cost.MODEL_RULES:
        if rule == "judge":  # a CPU job for the classifier judge: counted only for hf
            continue
        assert planned.get(rule, 0) == dry.get(rule, 0), rule


def test_flops_are_two_times_parameters_per_token_forward_and_six_per_trained_token():
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    params = config["model_registry"]["smollm2"]["params_b"] * 1e9
    jobs = cost.plan_jobs(config)
    for job in jobs:
        # the embedded default anchors F_n: one more forward (2) per trained token
        assert config["inhibitft"]["strategies"] == ["anchor"]
        factor = {"finetune": 6, "inhibitft": 8, "patch_generate": 4, "dump_activations": 4}
        factor |= {"dump_moved": 4, "restore_generate": 4}
        assert job.flops == pytest.approx(factor.get(job.rule, 2) * params * job.tokens)
    generate = next(j for j in jobs if j.rule == "generate")
    answered = cost.eval_sequences(config, [*config["topics"], *config["extra_sets"]])
    assert generate.sequences == answered
    new = config["generation"]["max_new_tokens"]
    assert generate.tokens == answered * (cost.ASSUMED_TOKENS["prompt"] + new)
    train = next(j for j in jobs if j.rule == "finetune")
    ft = config["finetune"]
    assert train.sequences == ft["max_steps"] * ft["batch_size"] * ft["grad_accum"]


def test_each_workload_runs_at_its_own_measured_throughput(tmp_path):
    config = cost.load_stack([REPO / "configs" / "paper.yaml"])
    report = tmp_path / "gpu.md"
    assert cost.measured_mfus(report) == {}
    report.write_text(
        "# GPU check\n\nMFU (activation dump): 0.31\nMFU (generation): 0.12\n"
        "MFU (patched generation): 0.1\nMFU (InhibitFT step (anchor)): 0.2\n"
    )
    measured = cost.measured_mfus(report)
    assert measured == {
        "activation dump": 0.31,
        "generation": 0.12,
        "patched generation": 0.1,
        "InhibitFT step (anchor)": 0.2,  # a workload named with parentheses
    }
    throughput = cost.Throughput(measured)
    # a workload the check timed runs at its own MFU, one it did not at the smallest measured
    assert throughput.mfu("activation dump") == (0.31, "measured")
    assert throughput.mfu("LoRA step (finetune)") == (0.1, "smallest measured")
    assert cost.Throughput({}).mfu("generation") == (cost.ASSUMED_MFU, "assumed")
    rows = {r["rule"]: r for r in cost.cost_table(config, throughput)}
    dump = rows["dump_activations"]
    hours = dump["pflops"] * 1e15 / (cost.H100_BF16_PEAK_FLOPS * 0.31) / 3600
    assert dump["gpu_hours"] == pytest.approx(hours) and dump["mfu"] == "0.31 measured"
    assert rows["finetune"]["mfu"] == "0.10 smallest measured"
    assumed = cost.format_plan(config, cost.Throughput({}))
    planned = cost.format_plan(config, throughput)
    assert "ASSUMED: 40%" in assumed and "ASSUMED: 40%" not in planned
    total = [
        float(re.search(r"\*\*([0-9.,]+)\*\*", text).group(1).replace(",", ""))
        for text in (assumed, planned)
    ]
    assert total[1] > total[0]  # every measured MFU is below the assumed 40%


def test_each_job_is_planned_at_the_workload_of_its_rule_and_inhibitfts_at_their_strategy():
    config = cost.load_stack([REPO / "configs" / "paper.yaml"])
    workloads = {job.workload for job in cost.plan_jobs(config)}
    strategies = config["inhibitft"]["strategies"]
    expected = {*cost.RULE_WORKLOADS.values(), *(cost.workload("inhibitft", s) for s in strategies)}
    assert workloads <= expected
    assert {f"InhibitFT step ({s})" for s in strategies} <= workloads


def test_the_command_prints_the_paper_plan_and_refuses_an_overlay_alone(capsys):
    assert cost.main(["--configfile", str(REPO / "configs" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "| **total** |" in out and "llama31_8b" in out and "API call" in out
    overlay = REPO / "configs" / "cpu-study-controls.yaml"
    assert cost.main(["--configfile", str(overlay)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polneurons config error:")


def test_set_overrides_a_key_of_the_stack_like_snakemakes_config(capsys):
    """`--set data.readout_pairs=0` turns the readout off: its jobs leave the plan."""
    embedded = [str(REPO / "config.yaml")]
    assert "| readout |" in cost.format_plan(cost.load_stack(embedded), cost.Throughput({}))
    off = cost.load_stack(embedded, ["data.readout_pairs=0"])
    assert off["data"]["readout_pairs"] == 0
    assert "readout" not in {job.rule for job in cost.plan_jobs(off)}
    assert cost.main(["--configfile", *embedded, "--set", "data.readout_pairs=0"]) == 0
    assert "| readout |" not in capsys.readouterr().out
