"""The device check (benchmarks/gpu_check.sh) in its CPU smoke version: every section reports a
figure or why it has none, the MFU lines are the cost plan's, and it runs without the packages
the GPU machine lacks (snakemake, jsonschema, gguf)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polneurons.cost import RULE_WORKLOADS, measured_mfus, workload

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "Matmul peak",
    "Model",
    "Activation dump",
    "Generation: plain and lockstep patched",
    "Teacher-forced readout",
    "Training steps: LoRA and InhibitFT",
    "Memory against the config's resources",
    "Unit tests with a CUDA path",
]
QUICK_TEST = (
    "tests/test_models.py::test_auto_dtype_is_bfloat16_on_gpu_and_float32_on_cpu_never_float16"
)
# imported first by the check's interpreter (and the pytest it starts): the device's packages
ABSENT = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("snakemake", "jsonschema", "gguf"):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)")

sys.meta_path.insert(0, Absent())
"""


def sections(text: str) -> dict[str, str]:
    return {
        part.split("\n", 1)[0]: part.split("\n", 1)[1]
        for part in re.split(r"^## ", text, flags=re.M)[1:]
    }


@pytest.mark.integration
def test_the_smoke_check_reports_every_section_with_a_figure(tmp_path):
    site = tmp_path / "device-packages"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ABSENT)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(site))
    done = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--smoke", "--tests", QUICK_TEST],
        env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (out / "gpu.md").read_text()
    assert "- Status: complete" in text and "CPU smoke" in text
    found = sections(text)
    assert list(found) == SECTIONS
    for title, body in found.items():
        assert "Failed:" not in body and "Skipped:" not in body, (title, body)
        assert re.search(r"\d", body), title
    mfu = dict(re.findall(r"^MFU \((.+)\): ([0-9.]+)$", text, re.M))
    # one line per workload the cost plan prices: every rule's, and each strategy's step
    strategies = ("freeze_rows", "stopgrad", "anchor")
    assert set(mfu) == {*RULE_WORKLOADS.values(), *(workload("inhibitft", s) for s in strategies)}
    assert all(float(v) > 0 for v in mfu.values())
    assert measured_mfus(out / "gpu.md") == {k: float(v) for k, v in mfu.items()}
    training = found["Training steps: LoRA and InhibitFT"]
    for variant in (
        "LoRA step (finetune)",
        "InhibitFT step (freeze_rows)",
        "InhibitFT step (stopgrad)",
        "InhibitFT step (anchor)",
    ):
        assert re.search(rf"^\| {re.escape(variant)} \| 1 x \d+ \| [0-9.]+ \|", training, re.M)
    memory = found["Memory against the config's resources"]
    assert len(re.findall(r"^\| .+ \| [0-9.]+ \| 8\.8 \| fits \|$", memory, re.M)) == 8
    assert "1 passed" in found["Unit tests with a CUDA path"]
    assert (out / "gpu_check.log").is_file()


def test_out_of_time_sections_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    gpu_check.main(["--out", str(tmp_path), "--smoke", "--budget-s", "0"])
    found = sections((tmp_path / "gpu.md").read_text())
    assert list(found) == SECTIONS
    for title in ("Matmul peak", "Model", "Unit tests with a CUDA path"):
        assert "- Skipped: out of time" in found[title], title
    for title in (
        "Activation dump",
        "Generation: plain and lockstep patched",
        "Teacher-forced readout",
    ):
        assert "- Skipped: the model was not built" in found[title], title
    assert "(no stage measured)" in found["Memory against the config's resources"]
    with pytest.raises(SystemExit):  # a CPU figure never lands where the cost plan reads a GPU's
        gpu_check.parse_args(["--out", str(REPO / "benchmarks" / "results"), "--smoke"])
