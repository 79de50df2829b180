"""GPU pinning on one machine (fake device counts, real lock files, real processes) and
progress bars throttled in log files."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from polneurons.gpus import claim_gpus, default_lock_dir, visible_gpus
from polneurons.progress import LOG_FILE_MININTERVAL_S, progress_bar

REPO = Path(__file__).resolve().parents[1]


def test_visible_gpus_reads_cuda_visible_devices_then_the_driver(tmp_path):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}, tmp_path) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == []
    gpus = tmp_path / "gpus"
    for bus in ("0000:01:00.0", "0000:02:00.0"):
        (gpus / bus).mkdir(parents=True)
    assert visible_gpus({}, gpus) == ["0", "1"]
    assert visible_gpus({}, tmp_path / "no-driver") == []


def test_lock_dir_is_per_user_on_this_machine_unless_set():
    assert default_lock_dir({"POLNEURONS_GPU_LOCK_DIR": "/x"}) == Path("/x")
    assert "polneurons-gpu-locks-" in default_lock_dir({}).name


def test_nothing_to_share_locks_nothing(tmp_path):
    # CPU jobs, a machine without GPUs, and a Slurm job that sees exactly its own GPUs.
    for n, visible in ((0, ["0", "1"]), (1, []), (1, ["5"]), (2, ["0", "1"])):
        with claim_gpus(n, visible, tmp_path / "locks") as got:
            assert got == visible
    assert not (tmp_path / "locks").exists()


PIN_JOB = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {src!r})
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"   # a fake 2-GPU machine
    os.environ["POLNEURONS_GPU_LOCK_DIR"] = {locks!r}
    from polneurons.gpus import pinned_gpus
    with pinned_gpus(1):
        print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
        time.sleep({hold})
    """
)


def _start_job(tmp_path: Path, hold: float) -> subprocess.Popen:
    code = PIN_JOB.format(src=str(REPO / "src"), locks=str(tmp_path / "locks"), hold=hold)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_two_concurrent_gpu_jobs_on_a_two_gpu_machine_get_different_devices(tmp_path):
    jobs = [_start_job(tmp_path, hold=3) for _ in range(2)]
    seen = [job.stdout.readline().strip() for job in jobs]
    for job in jobs:
        assert job.wait(timeout=30) == 0
    assert sorted(seen) == ["0", "1"]


def test_a_third_job_waits_for_a_device_to_free(tmp_path):
    locks = tmp_path / "locks"
    visible = ["0", "1"]
    waited = []
    with claim_gpus(1, visible, locks) as first, claim_gpus(1, visible, locks) as second:
        assert {*first, *second} == {"0", "1"}
        got: list[list[str]] = []

        def third():
            with claim_gpus(1, visible, locks, poll_s=0.05, on_wait=waited.append) as devices:
                got.append(devices)

        thread = threading.Thread(target=third)
        thread.start()
        time.sleep(0.5)
        assert not got and waited == [[]]  # both devices busy: it waits
    thread.join(timeout=10)
    assert got and got[0] in (["0"], ["1"])


def test_progress_bar_in_a_log_file_redraws_rarely():
    log = io.StringIO()
    with progress_bar(log, total=2000, desc="finetune") as bar:
        for _ in range(2000):
            bar.update(1)
            time.sleep(0.0005)  # 1 s in all: ~10 redraws at tqdm's default 0.1 s
    assert bar.mininterval == LOG_FILE_MININTERVAL_S
    redraws = log.getvalue().count("\r")
    assert 1 <= redraws <= 3, repr(log.getvalue())
    assert "2000/2000" in log.getvalue()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_keeps_tqdm_defaults():
    bar = progress_bar(FakeTerminal(), total=1)
    assert bar.mininterval == 0.1
    bar.close()
    assert progress_bar(None, total=1).disable
