"""`snakemake --profile slurm` on a real single-node Slurm.

Runs only with POLNEURONS_SLURM_TEST=1 (and as root): it installs and starts Slurm with
tools/slurm/start_slurm.sh, then runs the workflow from the repository root with the
README's command, `snakemake --profile slurm`, on the tiny configuration, in a temporary
working folder (`--directory`), with GPU requests on (config `resources: {gpu: 1}`, as on a
user's cluster: the test node declares counted GPUs without devices, so the jobs run on
the CPU). Meanwhile a poller records `scontrol show job` of running jobs and cancels one of
them with `scancel`; the profile's `retries: 1` must resubmit it and the run must still
complete. The GPU rules must ask Slurm for one GPU each, the CPU rules for none, and the rule
that needs the network (prepare_model) must run on the submit host, not as a job.

The test cluster has no accounting, so sacct cannot report job states: the test passes
`--slurm-status-command squeue` (the profile keeps the plugin's sacct default for real
clusters).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import (
    FINISHED_STATES,
    REPO,
    JobWatcher,
    run_bounded,
    squeue_jobs,
    start_cluster,
    stop_cluster,
    submitted_jobs,
)

pytestmark = pytest.mark.slurm

# The real workflow's whole tiny run is 37 jobs, several minutes on Slurm (each job starts
# its own snakemake, and the plugin's status checks space out by 10 s while none finishes);
# by default the test builds one chain of it: the base model's judged generations
# (prepare_model, train_judge -> generate -> judge). POLNEURONS_SLURM_FULL=1 runs it all.
FULL_RUN = os.environ.get("POLNEURONS_SLURM_FULL") == "1"
SNAKEMAKE_BOUND_S = 600 if FULL_RUN else 300
# Seconds before the plugin's first status check (default 40), to keep the test short.
STATUS_CHECK_START_S = 2
# GPU requests on, one GPU per model job, as a user's cluster run has them (the tiny config
# turns them off). A config file, merged key by key into the one before it: `--config
# 'resources={gpu: 1}'` would give the string "1" to the rule (snakemake reads nested
# --config values as strings), which the jobstep plugin rejects ("gpu must be an integer").
GPU_CONFIG = "resources:\n  gpu: 1\n"
# Rules that load a model (gpu: 1 above) and the one that needs the network.
GPU_RULES = {
    "generate",
    "score_likelihood",
    "finetune",
    "inhibitft",
    "dump_activations",
    "dump_moved",
}
GPU_RULES |= {"patch_generate"}
NETWORK_RULES = {"prepare_model"}


@pytest.fixture(scope="module")
def slurm():
    started_here = start_cluster()
    yield
    if started_here:
        stop_cluster()


def _workflow_args(workdir: Path) -> tuple[list[str], dict]:
    """Snakemake arguments for the tiny configuration in `workdir` (targets, config files,
    config overrides, as the workflow tests pass them), and the environment to run in."""
    from workflow_helpers import (
        TINY_CONFIG,
        build_tiny_checkpoint,
        require_mirror,
        subprocess_env,
    )

    mirror = require_mirror()
    model = build_tiny_checkpoint(workdir.parent / "tiny_model")
    gpu_config = workdir.parent / "gpu.yaml"
    gpu_config.write_text(GPU_CONFIG)
    targets = [] if FULL_RUN else [str(workdir / "results" / "tiny" / "base" / "ratings.jsonl")]
    args = [
        *targets,
        "--configfile",
        str(TINY_CONFIG),
        str(gpu_config),
        "--config",
        f"data={{mirror: {mirror}}}",
        f"model_registry={{tiny: {{path: {model}}}}}",
        f"results={workdir / 'results'}",
    ]
    return args, subprocess_env()


def _timelimit_minutes(value: str) -> int:
    """Slurm TimeLimit ([D-]HH:MM:SS or MM:SS) in whole minutes."""
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def _gpus_requested(record: dict[str, str]) -> int:
    """GPUs a job asked for, from `scontrol show job` (TresPerJob/TresPerNode `gres:gpu:N`
    or `gres/gpu:N`, as --gpus and --gres write them); 0 when none."""
    total = 0
    for key in ("TresPerJob", "TresPerNode", "TresPerTask"):
        for match in re.finditer(r"gres[:/]gpu(?::[\w-]+)?[:=](\d+)", record.get(key, "")):
            total += int(match.group(1))
    return total


def _memory_mb(value: str) -> int:
    """Slurm memory (e.g. 400M, 4G) in megabytes."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value).groups()
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "": 1}[unit]
    return round(float(number) * scale)


def test_profile_runs_workflow_on_slurm_with_resources_and_retry(slurm, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    workflow_args, env = _workflow_args(workdir)
    common = [*workflow_args, "--directory", str(workdir), "--nocolor"]
    snakemake = [sys.executable, "-m", "snakemake"]
    command = [
        *snakemake,
        # The README's command: ./slurm (a link to profiles/slurm) in the repository root.
        "--profile",
        "slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        str(STATUS_CHECK_START_S),
        "--slurm-keep-successful-logs",
        *common,
    ]
    log_path = tmp_path / "snakemake.log"
    watcher = JobWatcher(known_before=set(squeue_jobs()))
    started = time.monotonic()
    watcher.start()
    try:
        # From the repository root, as a user types it.
        returncode = run_bounded(command, REPO, log_path, SNAKEMAKE_BOUND_S, env)
    finally:
        watcher.stop()
        watcher.cancel_leftovers()
    elapsed_s = time.monotonic() - started
    log = log_path.read_text()
    tail = "\n".join(log.splitlines()[-60:])
    print(
        f"\nsnakemake on Slurm ({'whole' if FULL_RUN else 'one chain of the'} tiny run) took {elapsed_s:.0f} s"
    )

    # The run completed, and nothing is left to do.
    assert returncode == 0, f"snakemake exited {returncode} after {elapsed_s:.0f} s:\n{tail}"
    dry_run = tmp_path / "dry_run.log"
    assert run_bounded([*snakemake, "-n", *common], REPO, dry_run, 120, env) == 0, (
        dry_run.read_text()
    )
    assert "Nothing to be done" in dry_run.read_text(), dry_run.read_text()[-3000:]

    # Every job went through sbatch: Slurm job ids in the log, one Slurm log file each,
    # and squeue saw each under this run's id.
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    jobs = submitted_jobs(log)
    assert jobs, f"no job was submitted to Slurm:\n{tail}"
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    for slurm_id, job in jobs.items():
        assert list(slurm_logs.rglob(f"{slurm_id}.log")), f"no Slurm log for job {slurm_id}"
        seen = watcher.last_states.get(slurm_id)
        assert seen is not None, f"squeue never showed Slurm job {slurm_id} ({job.rule})"
        assert seen["name"] == run_id
        assert seen["state"] in FINISHED_STATES, f"job {slurm_id} left {seen['state']}"

    # The network rule ran on this host (a local rule), never as a Slurm job.
    for rule in NETWORK_RULES:
        assert f"localrule {rule}:" in log, f"{rule} did not run as a local rule:\n{tail}"
        assert rule not in {j.rule for j in jobs.values()}, f"{rule} was submitted to Slurm"

    # Slurm granted what the rules declared: memory, time limit, CPUs; one GPU for each GPU
    # rule, none for the others.
    checked = [i for i in watcher.running_records if i in jobs]
    assert checked, "the poller never caught one of this run's jobs running"
    for slurm_id in checked:
        record, job = watcher.running_records[slurm_id], jobs[slurm_id]
        what = f"Slurm job {slurm_id} (rule {job.rule}): {record}"
        assert _memory_mb(record["MinMemoryNode"]) == int(job.resources["mem_mb"]), what
        assert _timelimit_minutes(record["TimeLimit"]) == int(job.resources["runtime"]), what
        assert int(record["NumCPUs"]) == job.threads, what
        expected_gpus = 1 if job.rule in GPU_RULES else 0
        assert int(job.resources.get("gpu", 0)) == expected_gpus, what
        assert _gpus_requested(record) == expected_gpus, what
        assert record["Comment"].startswith(f"rule_{job.rule}"), what
    kinds = {jobs[i].rule in GPU_RULES for i in checked}
    assert kinds == {True, False}, f"caught only {'GPU' if True in kinds else 'CPU'} jobs running"
    print(
        "seen running on Slurm:",
        ", ".join(
            f"{i} {jobs[i].rule} mem={watcher.running_records[i]['MinMemoryNode']}"
            f" time={watcher.running_records[i]['TimeLimit']}"
            f" gpus={_gpus_requested(watcher.running_records[i])}"
            for i in checked
        ),
    )

    # The job Slurm killed was resubmitted (retries: 1) and the retry completed.
    assert len(watcher.cancelled) == 1, f"no running job could be cancelled:\n{tail}"
    cancelled_id = watcher.cancelled[0]
    assert watcher.last_states[cancelled_id]["state"] == "CANCELLED"
    assert cancelled_id in jobs, f"cancelled job {cancelled_id} is not one of this run's"
    cancelled = jobs[cancelled_id]
    retries = [
        slurm_id
        for slurm_id, job in jobs.items()
        if int(slurm_id) > int(cancelled_id)
        and (job.rule, job.wildcards) == (cancelled.rule, cancelled.wildcards)
    ]
    assert retries, f"{cancelled.rule} {cancelled.wildcards} was not resubmitted:\n{tail}"
    assert watcher.last_states[retries[-1]]["state"] == "COMPLETED"
    assert f"SLURM-job '{cancelled_id}' failed" in log
    assert "Trying to restart job" in log
    print(f"cancelled {cancelled_id} ({cancelled.rule}), resubmitted as {retries[-1]}")

    # Nothing of this run is left queued or running.
    leftovers = {
        i: j["state"] for i, j in watcher.new_jobs().items() if j["state"] not in FINISHED_STATES
    }
    assert not leftovers, leftovers


def test_stopping_the_cluster_removes_the_configuration_it_wrote_and_nothing_else(tmp_path):
    """A slurm.conf naming a controller that no longer runs makes every Slurm client wait about
    10 s, and the executor plugin runs `scontrol show config` each time snakemake starts: so
    every later snakemake command, on any executor, would wait too. stop_slurm.sh removes the
    configuration start_slurm.sh wrote (its marker line) and leaves a site's own alone."""
    from slurm_cluster import START_SCRIPT, STOP_SCRIPT

    marker = re.search(r'^MARKER="(.+)"$', START_SCRIPT.read_text(), re.M).group(1)
    conf_dir = tmp_path / "etc-slurm"
    conf_dir.mkdir()
    ours = conf_dir / "slurm.conf"
    ours.write_text(f"{marker}\nClusterName=polneurons\n")
    sites = conf_dir / "gres.conf"
    sites.write_text("NodeName=node1 Name=gpu File=/dev/nvidia0\n")
    env = os.environ | {
        "POLNEURONS_SLURM_STATE": str(tmp_path / "state"),  # no pid files: nothing to stop
        "POLNEURONS_SLURM_CONF_DIR": str(conf_dir),
    }
    proc = subprocess.run(["bash", str(STOP_SCRIPT)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not ours.exists()
    assert sites.read_text() == "NodeName=node1 Name=gpu File=/dev/nvidia0\n"
