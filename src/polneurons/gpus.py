"""One GPU per job on a multi-GPU machine: each job claims free devices by lock file and sees
only those (CUDA_VISIBLE_DEVICES), so two jobs never load on the same `cuda` device.

Snakemake's `gpu` resource only caps how many GPUs the running jobs ask for in total; it does
not say which device a job gets (every job would use device 0). On Slurm the scheduler
already sets CUDA_VISIBLE_DEVICES to the job's own devices, so there is nothing to share and
nothing is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from polneurons.errors import EnvironmentProblem

LOCK_DIR_VAR = "POLNEURONS_GPU_LOCK_DIR"
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def visible_gpus(environ: Mapping[str, str] = os.environ, proc: Path = NVIDIA_PROC) -> list[str]:
    """The devices this process may use: CUDA_VISIBLE_DEVICES when set, else the NVIDIA
    driver's GPUs (counted without initializing CUDA, which would freeze the choice)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if proc.is_dir():
        return [str(i) for i in range(len(list(proc.iterdir())))]
    return []


def default_lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Machine-local folder of the per-device lock files (shared by every run of this user)."""
    if environ.get(LOCK_DIR_VAR):
        return Path(environ[LOCK_DIR_VAR])
    return Path(tempfile.gettempdir()) / f"polneurons-gpu-locks-{os.getuid()}"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def claim_gpus(
    n: int,
    visible: list[str],
    lock_dir: Path,
    poll_s: float = 2.0,
    on_wait=None,
) -> Iterator[list[str]]:
    """Hold `n` of the `visible` devices for the duration of the block and yield their ids.

    With nothing to share (n == 0, no GPU, or n >= the visible devices) it yields the visible
    devices unchanged and locks nothing. Otherwise it takes the first free device lock files
    (`gpu<id>.lock` under `lock_dir`, flock: released by the OS even if the job is killed), and
    waits, polling every `poll_s` seconds, while fewer than `n` are free; `on_wait(held)` is
    called once when it starts waiting.
    """
    if n <= 0 or not visible or n >= len(visible):
        yield list(visible)
        return
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot create the GPU lock folder {lock_dir}: {exc.strerror}",
            f"set {LOCK_DIR_VAR} to a writable folder on this machine",
        ) from None
    held: dict[str, int] = {}
    waited = False
    try:
        while True:
            for device in visible:
                if len(held) == n:
                    break
                if device not in held:
                    fd = _try_lock(lock_dir / f"gpu{device}.lock")
                    if fd is not None:
                        held[device] = fd
            if len(held) == n:
                break
            if not waited and on_wait is not None:
                on_wait(sorted(held))
            waited = True
            time.sleep(poll_s)
        yield [d for d in visible if d in held]
    finally:
        for fd in held.values():
            os.close(fd)


@contextlib.contextmanager
def pinned_gpus(n: int, log=None) -> Iterator[list[str]]:
    """Claim `n` GPUs of this machine and set CUDA_VISIBLE_DEVICES to them for this process
    (call before torch initializes CUDA). Yields the devices the job sees."""

    def waiting(held):
        if log is not None:
            log.info(
                "waiting for a free GPU (%d of %d held); other jobs use the rest", len(held), n
            )

    visible = visible_gpus()
    with claim_gpus(n, visible, default_lock_dir(), on_wait=waiting) as devices:
        if devices != visible:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            if log is not None:
                log.info(
                    "GPU job: CUDA_VISIBLE_DEVICES=%s (of %s)", ",".join(devices), ",".join(visible)
                )
        yield devices
