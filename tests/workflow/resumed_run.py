"""The tiny run killed at four points and resumed (tests/workflow/test_fault_injection.py), as a
user resumes it (README "When something fails"):

    snakemake --unlock <same options>                  # the kill left Snakemake's lock behind
    snakemake <same options> --rerun-incomplete        # drop half-made outputs, continue

It is also the determinism tests' second run (tests/workflow/test_determinism.py): every output
it has was computed in its own fresh folder, so outputs identical to the reference run's show
the workflow deterministic as well as the resume lossless.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from workflow_helpers import (
    RESUME_FLAGS,
    Workdir,
    kill_group,
    make_workdir,
    once_per_session,
    wait_until,
)

RUN = "tiny/right/crime_and_gun/ft"
# The resumed run builds every target of the tiny run (the kill points lie on the way) and keeps
# its dumps (--notemp) for the shard test of test_fault_injection.py.
KEEP_DUMPS = "--notemp"


@dataclass(frozen=True)
class KillPoint:
    """A rule to kill mid-job: its running output (a regex on Snakemake's incomplete markers),
    the log file of that output, and the log text that says the job's script is at work."""

    rule: str
    output: str
    log: str  # format string over the output regex's named groups
    started: str

    def ready(self, results: Path, running: list[str]) -> str | None:
        """The output of a job of this rule that is running and has begun its work, if any."""
        for path in running:
            match = re.fullmatch(re.escape(str(results)) + "/" + self.output, path)
            if match:
                log = results / self.log.format(**match.groupdict())
                if log.is_file() and self.started in log.read_text():
                    return path
        return None


KILL_POINTS = (
    # the first file is in place, the other 24 are being copied (a few ms each)
    KillPoint("download_data", r"data/raw/.+", "logs/download_data.log", "verified"),
    KillPoint(
        "finetune",
        r"(?P<run>tiny/right/crime_and_gun/ft)/train",
        "logs/finetune/{run}.log",
        "fine-tuning:",
    ),
    KillPoint(
        "dump_activations",
        r"tiny/right/crime_and_gun/ft/dumps/(?P<topic>\w+)",
        "logs/dump_activations/tiny/right/crime_and_gun/ft/{topic}.log",
        "rule dump_activations",
    ),
    KillPoint("judge", r"(?P<run>tiny/.+)/ratings\.jsonl", "logs/judge/{run}.log", "rule judge"),
)


def kill_at_next_point(work: Workdir, remaining: list[KillPoint], flags: tuple[str, ...]):
    """Start the run; SIGKILL it (with every job) as soon as a job of a remaining kill point is
    at work. Returns the kill point hit and the output its job left unfinished."""
    proc = work.start(KEEP_DUMPS, *flags)
    hit: list[tuple[KillPoint, str]] = []

    def reached() -> bool:
        running = work.running_outputs()
        for point in remaining:
            output = point.ready(work.results, running)
            if output:
                hit.append((point, output))
                return True
        return False

    try:
        wait_until(reached, proc, poll=0.02, what=f"a job of {[p.rule for p in remaining]}")
    finally:
        kill_group(proc)
    return hit[0]


@pytest.fixture(scope="session")
def resumed_run(tmp_path_factory, tiny_model_dir) -> Workdir:
    """The whole tiny run in a fresh folder, killed with SIGKILL during a download, a
    fine-tuning, a dump and a judge call, resumed after each kill with --unlock and
    --rerun-incomplete until it completes. Its users (the fault-injection and determinism tests,
    one xdist group) may alter it only to restore it, as the fault tests do."""

    def run() -> Workdir:
        work = make_workdir(tmp_path_factory.mktemp("killed"), tiny_model_dir)
        work.kills = []
        remaining = list(KILL_POINTS)
        started = time.monotonic()
        flags: tuple[str, ...] = ()
        while remaining:
            point, output = kill_at_next_point(work, remaining, flags)
            remaining.remove(point)
            # the killed job never finished: Snakemake still marks its output incomplete, and
            # the output is not under its final name (written to a temporary name, then renamed)
            assert output in work.running_outputs()
            if point.rule != "download_data":
                assert not Path(output).exists(), f"{output} half-written under its final name"
            work.kills.append(point.rule)
            if len(work.kills) == 1:
                # a plain rerun is refused, and the user is told the two flags the README names:
                # the killed download left files marked incomplete, and Snakemake's lock behind
                plain = work.run(KEEP_DUMPS, timeout=300)
                assert plain.returncode != 0, plain.output[-3000:]
                assert "IncompleteFilesException" in plain.output, plain.output[-3000:]
                assert "--rerun-incomplete" in plain.output
                locked = work.run(KEEP_DUMPS, *RESUME_FLAGS, timeout=300)
                assert locked.returncode != 0, locked.output[-3000:]
                assert "LockException" in locked.output and "--unlock" in locked.output
            unlock = work.run("--unlock", timeout=300)
            assert unlock.returncode == 0, unlock.output[-3000:]
            flags = RESUME_FLAGS
        done = work.run(KEEP_DUMPS, *RESUME_FLAGS)
        assert done.returncode == 0, work.explain(done)
        work.seconds = time.monotonic() - started
        return work

    return once_per_session("resumed_run", run)
