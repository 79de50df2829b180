"""Helpers for the Slurm cluster test: start a real single-node Slurm, watch its jobs while
snakemake runs, and read job facts from the snakemake log.

Everything started here is stopped here, by process or job id, with bounded waits.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "tools" / "slurm" / "start_slurm.sh"
STOP_SCRIPT = REPO / "tools" / "slurm" / "stop_slurm.sh"
STATE_DIR = Path(os.environ.get("POLNEURONS_SLURM_STATE", "/run/polneurons-slurm"))
ENABLE_VAR = "POLNEURONS_SLURM_TEST"
# start_slurm.sh exit codes that mean "this machine cannot host the cluster": skip.
START_EXIT_NOT_ROOT = 2
START_EXIT_NO_PACKAGES = 3
# Terminal job states in squeue's long form.
FINISHED_STATES = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


def _daemon_running(program: str) -> bool:
    """True if the pid file start_slurm.sh wrote for `program` names a live `program`."""
    pid_file = STATE_DIR / f"{program}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        return Path(f"/proc/{pid}/comm").read_text().strip() == program
    except (OSError, ValueError):
        return False


def start_cluster() -> bool:
    """Start the cluster (or skip the test with the reason); return True if this call
    started the daemons (so the caller stops them) and False if they were already up."""
    if os.environ.get(ENABLE_VAR) != "1":
        pytest.skip(f"Slurm cluster test runs only with {ENABLE_VAR}=1")
    if os.geteuid() != 0:
        pytest.skip("Slurm cluster test needs root (it installs and starts slurm-wlm)")
    already_up = _daemon_running("slurmctld") and _daemon_running("slurmd")
    result = subprocess.run(
        ["timeout", "-k", "10", "600", "bash", str(START_SCRIPT)],
        capture_output=True,
        text=True,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode in (START_EXIT_NOT_ROOT, START_EXIT_NO_PACKAGES):
        pytest.skip(f"cannot start Slurm here: {' '.join(output.splitlines()[-2:])}")
    if result.returncode != 0:
        pytest.fail(f"tools/slurm/start_slurm.sh failed ({result.returncode}):\n{output}")
    return not already_up


def stop_cluster() -> None:
    subprocess.run(["timeout", "-k", "5", "60", "bash", str(STOP_SCRIPT)], check=False)


def squeue_jobs() -> dict[str, dict[str, str]]:
    """All jobs squeue knows (finished ones stay MinJobAge seconds): id -> fields."""
    out = subprocess.run(
        ["timeout", "-k", "2", "10", "squeue", "-h", "-t", "all", "-o", "%i|%T|%j|%k"],
        capture_output=True,
        text=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            job_id, state, name, comment = parts
            jobs[job_id] = {"state": state, "name": name, "comment": comment}
    return jobs


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (key=value fields; Command etc. cut at spaces)."""
    out = subprocess.run(
        ["timeout", "-k", "2", "10", "scontrol", "show", "job", "-o", job_id],
        capture_output=True,
        text=True,
    ).stdout
    return dict(re.findall(r"(\w[\w:/]*)=(\S*)", out))


@dataclass
class JobWatcher:
    """Background poller over squeue while snakemake runs.

    Records the `scontrol show job` of every new job seen RUNNING, and cancels (scancel)
    one new job whose comment (snakemake writes `rule_<rule>[_wildcards_<wildcards>]`)
    starts with `cancel_comment_prefix`, once it has run `cancel_after_s`, so that Slurm
    kills a job mid-run. A job that completes before the cancel lands does not count, and
    the next one is tried.
    """

    known_before: set[str]
    cancel_comment_prefix: str = "rule_"
    cancel_after_s: float = 3.0
    poll_s: float = 0.5
    running_records: dict[str, dict[str, str]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    last_states: dict[str, dict[str, str]] = field(default_factory=dict)
    _first_seen_running: dict[str, float] = field(default_factory=dict)
    _tried_to_cancel: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slurm-job-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.last_states = self.new_jobs()

    def new_jobs(self) -> dict[str, dict[str, str]]:
        return {i: j for i, j in squeue_jobs().items() if i not in self.known_before}

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job_id, job in self.new_jobs().items():
                if job["state"] != "RUNNING":
                    continue
                if job_id not in self.running_records:
                    record = scontrol_job(job_id)
                    if record.get("JobState") == "RUNNING":
                        self.running_records[job_id] = record
                        self._first_seen_running[job_id] = now
                if (
                    not self.cancelled
                    and job_id not in self._tried_to_cancel
                    and job["comment"].startswith(self.cancel_comment_prefix)
                    and job_id in self._first_seen_running
                    and now - self._first_seen_running[job_id] >= self.cancel_after_s
                ):
                    self._tried_to_cancel.add(job_id)
                    if self._cancel(job_id):
                        self.cancelled.append(job_id)
            self._stop.wait(self.poll_s)

    @staticmethod
    def _cancel(job_id: str) -> bool:
        """scancel the job; True once Slurm reports it CANCELLED (within 10 s)."""
        subprocess.run(["timeout", "-k", "2", "10", "scancel", job_id], capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = scontrol_job(job_id).get("JobState", "")
            if state == "CANCELLED":
                return True
            if state in FINISHED_STATES:
                return False
            time.sleep(0.2)
        return False

    def cancel_leftovers(self) -> None:
        """scancel this run's jobs that are not finished (after a failed or killed run)."""
        for job_id, job in self.new_jobs().items():
            if job["state"] not in FINISHED_STATES:
                subprocess.run(["timeout", "-k", "2", "10", "scancel", job_id], check=False)


def run_bounded(
    command: list[str], cwd: Path, log_path: Path, timeout_s: int, env: dict | None = None
) -> int:
    """Run command in its own process group under `timeout -k`, output to log_path, and
    return its exit status. Should the bound pass anyway, or the caller be interrupted,
    the whole group is killed by its id (snakemake's Slurm jobs are the caller's to scancel)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["timeout", "-k", "15", str(timeout_s), *command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        try:
            return process.wait(timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:
            return -signal.SIGKILL
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@dataclass
class SubmittedJob:
    """One job of the snakemake log: its rule, wildcards and the resources it declared."""

    rule: str
    slurm_id: str
    wildcards: str
    threads: int
    resources: dict[str, str]


_BLOCK_START = re.compile(r"^(?:local)?rule (\w+):$")
_SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+)")


def submitted_jobs(log_text: str) -> dict[str, SubmittedJob]:
    """Parse snakemake's log: SLURM job id -> the job block submitted with it.

    Snakemake prints the blocks of a batch of jobs ("rule R:", "jobid: N", "resources: ...")
    before their "Job N has been submitted with SLURM jobid X" lines, so blocks are keyed by
    snakemake's job id; a retried job prints its block again.
    """
    blocks: dict[str, dict] = {}
    jobs: dict[str, SubmittedJob] = {}
    block: dict | None = None
    for line in log_text.splitlines():
        stripped = line.strip()
        start = _BLOCK_START.match(stripped)
        if start:
            block = {"rule": start.group(1), "threads": 1, "resources": {}, "wildcards": ""}
            continue
        submitted = _SUBMITTED.match(stripped)
        if submitted:
            block = None
            snakemake_id, slurm_id = submitted.groups()
            if snakemake_id in blocks:
                jobs[slurm_id] = SubmittedJob(slurm_id=slurm_id, **blocks[snakemake_id])
            continue
        if block is None or ":" not in stripped:
            continue
        key, value = (part.strip() for part in stripped.split(":", 1))
        if key == "jobid":
            blocks[value] = block
        elif key == "threads":
            block["threads"] = int(value)
        elif key == "wildcards":
            block["wildcards"] = value
        elif key == "resources":
            block["resources"] = dict(p.split("=", 1) for p in value.split(", ") if "=" in p)
    return jobs
