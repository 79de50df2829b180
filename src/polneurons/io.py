"""Atomic writes, checksums and small JSON helpers: nothing half-written is ever left under its final name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed writer; one writer per output
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    if is_dir:
        target.mkdir()
    try:
        yield target
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike):
    from polneurons.errors import DataError

    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", "rerun the rule that makes it") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
            "delete the file so the workflow recomputes or re-downloads it",
        ) from None


def save_torch(obj, path: str | os.PathLike) -> str:
    """torch.save atomically; returns the file's sha256."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        digest = sha256_file(tmp)
    return digest


def load_torch_verified(path: str | os.PathLike, sha256: str | None):
    """torch.load after checking the file's sha256 against the one recorded in a manifest."""
    import torch

    from polneurons.errors import IntegrityError

    path = Path(path)
    if not path.exists():
        raise IntegrityError(f"{path} is missing", "delete its manifest and rerun to recompute it")
    if sha256 is not None and sha256_file(path) != sha256:
        raise IntegrityError(
            f"{path} does not match the sha256 in its manifest (truncated or altered)",
            "delete the file's folder and rerun the workflow to recompute it",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise IntegrityError(
            f"{path} cannot be read ({type(exc).__name__})",
            "delete the file's folder and rerun the workflow to recompute it",
        ) from None


def write_jsonl(path: str | os.PathLike, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    from polneurons.errors import DataError

    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(
                    f"{path} line {i} is not valid JSON (truncated?)",
                    "delete the file so the workflow recomputes it",
                ) from None
    return rows
