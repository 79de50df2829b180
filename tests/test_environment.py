"""The software environment: pyproject's dependency floors, the conda env file that mirrors
them, and how rule scripts reach the polneurons package inside a conda env."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "envs" / "polneurons.yaml"
# In pyproject but deliberately not in the rule env: a job's script unpickles the snakemake
# object with the snakemake of the process that started it (appended to sys.path by
# Snakemake), so a second, possibly different snakemake in the env must not shadow it.
NOT_IN_RULE_ENV = {"snakemake", "snakemake-executor-plugin-slurm"}
# Floors that exclude known-broken combinations (package -> the lowest version allowed).
REQUIRED_FLOORS = {
    # transformers 5 needs peft >= 0.18 (older peft imports names transformers 5 removed).
    "peft": "0.18",
    # spawned jobs get `--retries 0` from 9.14.1 on; several --profile files from 9.17.
    "snakemake": "9.17",
    # 0.8 changed the tracing API bench_dump.py uses.
    "nnsight": "0.8",
}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in reqs}


def env_pip_lines() -> list[str]:
    deps = yaml.safe_load(ENV_FILE.read_text())["dependencies"]
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, f"{ENV_FILE}: expected one pip: section, found {len(pip)}"
    return pip[0]


def floor(spec: SpecifierSet) -> Version:
    lows = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    assert lows, f"{spec} has no lower bound"
    return max(lows)


def test_conda_env_lists_the_pyproject_dependencies_with_the_same_pins():
    project = requirements(pyproject()["project"]["dependencies"])
    env = requirements(env_pip_lines())
    expected = {n: str(r) for n, r in project.items() if n not in NOT_IN_RULE_ENV}
    assert {n: str(r) for n, r in env.items()} == expected


# Declared for what another library loads on its behalf, never imported by our code.
USED_THROUGH = {
    "accelerate": "transformers (device placement, low-memory loading)",
    "gguf": "transformers (reading SmolLM2's GGUF checkpoint)",
    "tabulate": "pandas.DataFrame.to_markdown",
    "snakemake-executor-plugin-slurm": "snakemake --executor slurm (profiles/slurm)",
}
IMPORT_NAME = {"scikit-learn": "sklearn", "pyyaml": "yaml"}


def test_every_declared_dependency_is_used():
    """A dependency nothing uses is weight in every environment (`datasets` was one: the data
    layer reads a few pinned JSON files, with checks `datasets` would not make)."""
    code = (
        "\n".join(
            path.read_text()
            for folder in ("src", "scripts", "workflow")
            for path in (REPO / folder).rglob("*")
            if path.suffix in (".py", ".smk")
        )
        + (REPO / "Snakefile").read_text()
    )
    imported = set(re.findall(r"^\s*(?:import|from) ([A-Za-z_]+)", code, re.M))
    for name in requirements(pyproject()["project"]["dependencies"]):
        if name in USED_THROUGH:
            continue
        assert IMPORT_NAME.get(name, name) in imported, f"{name} is declared but never imported"


def test_conda_env_installs_no_local_path():
    # Snakemake copies the env file under .snakemake/conda/ before creating the env: any
    # relative path (`-e ../`, `.`) would resolve against that copy, not the checkout.
    for line in env_pip_lines():
        assert not re.match(r"^(-e|--editable)\b|^[.~/]", line.strip()), line


def test_rule_scripts_import_this_checkouts_polneurons_ahead_of_any_other(tmp_path):
    """A job's script imports polneurons from this checkout's src/, even with another copy
    first on the PYTHONPATH snakemake was started with (an install of another checkout): the
    Snakefile puts src/ first on the PYTHONPATH every job inherits."""
    decoy = tmp_path / "decoy" / "polneurons"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy polneurons was imported')\n")
    assert not (REPO / "scripts" / "polneurons").exists()  # no second route beside src/
    mirror = REPO.parent / "shared" / "political_stance_data"
    if not mirror.is_dir():
        pytest.skip(f"data mirror not found at {mirror}")
    env = {**os.environ, "PYTHONPATH": str(decoy.parent), "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile")]
        + ["--directory", str(tmp_path / "work"), "--configfile", str(REPO / "config.yaml")]
        + ["--cores", "1", "download_data", "--config"]
        + [f"data={{mirror: {mirror}}}", f"results={tmp_path / 'results'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "results" / "data" / "raw").is_dir()


def test_version_floors_exclude_the_broken_combinations():
    data = pyproject()["project"]
    reqs = requirements(data["dependencies"] + data["optional-dependencies"]["bench"])
    for name, lowest in REQUIRED_FLOORS.items():
        assert floor(reqs[name].specifier) >= Version(lowest), f"{name}: {reqs[name]}"
    # The Snakefile refuses an older snakemake with the same floor.
    snakefile = (REPO / "Snakefile").read_text()
    assert f'min_version("{floor(reqs["snakemake"].specifier)}")' in snakefile


def test_installed_packages_satisfy_the_pyproject_pins():
    # CI installs from pyproject; the floors must still admit what that gives.
    data = pyproject()["project"]
    for name, req in requirements(data["dependencies"]).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is a dependency but not installed")
        assert req.specifier.contains(Version(installed).base_version, prereleases=True), (
            f"{name} {installed} does not satisfy {req}"
        )


def test_readme_cuda_hint_names_a_wheel_index_current_torch_ships():
    for text in ((REPO / "README.md").read_text(), (REPO / "Makefile").read_text()):
        indexes = re.findall(r"download\.pytorch\.org/whl/(cu\d+)", text)
        assert indexes and set(indexes) <= {"cu126", "cu130"}, indexes


def test_a_non_editable_install_ships_the_schema_and_validates_a_config(tmp_path):
    """Installed as a wheel (not from this checkout), polneurons still finds its config schema."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        + ["--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    assert (target / "polneurons" / "config.schema.yaml").is_file()
    check = (
        "import sys, yaml, polneurons; from polneurons.config import validate_config; "
        f"assert polneurons.__file__.startswith({str(target)!r}), polneurons.__file__; "
        f"cfg = validate_config(yaml.safe_load(open({str(REPO / 'config.yaml')!r}))); "
        "print(cfg['neurons']['k'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = yaml.safe_load((REPO / "config.yaml").read_text())["neurons"]["k"]
    assert result.stdout.strip() == str(expected)
