"""Run the real workflow on the tiny configuration from tests: checkpoint, command, kills, digests.

Every run works in its own folder (``--directory``): Snakemake's metadata (``.snakemake``) and
all results stay there, never in the repository. Import the session fixtures into a test module
with ``from workflow_helpers import reference_run  # noqa: F401``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIRROR = REPO.parent / "shared" / "political_stance_data"
TINY_CONFIG = REPO / "tests" / "workflow" / "configs" / "tiny.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RUN_TIMEOUT_S = 600  # one whole tiny run takes 2-3 minutes on 2 busy cores

# What a user types to continue after a crash or a kill (README "When something fails").
RESUME_FLAGS = ("--rerun-incomplete",)


def require_mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return MIRROR


def build_tiny_checkpoint(path: Path) -> Path:
    """A tiny random llama with its tokenizer, saved as a checkpoint folder (seconds)."""
    from polneurons.testing import save_tiny_checkpoint

    if not (path / "config.json").is_file():
        save_tiny_checkpoint(str(path))
    return path


def subprocess_env() -> dict:
    """The environment of a workflow subprocess: offline, one thread per job, no user site."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONNOUSERSITE="1",
    )
    return env


@dataclass
class Workdir:
    """One isolated workflow run: its own working folder, results folder and model checkpoint."""

    root: Path
    model: Path
    mirror: Path = MIRROR
    extra_config: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0
    configfiles: tuple[Path, ...] = (TINY_CONFIG,)
    results_folder: str = "results"  # relative to root
    env: dict = field(default_factory=dict)  # added to subprocess_env()

    @property
    def results(self) -> Path:
        return self.root / self.results_folder

    def command(self, *args: str, cores: int = 2) -> list[str]:
        """The snakemake command line of this run (targets and flags go in `args`)."""
        return [
            str(SNAKEMAKE),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(self.root),
            "--cores",
            str(cores),
            "--configfile",
            *map(str, self.configfiles),
            "--config",
            f"data={{mirror: {self.mirror}}}",
            f"model_registry={{tiny: {{path: {self.model}}}}}",
            f"results={self.results}",
            *self.extra_config,
            "--nocolor",
            *args,
        ]

    def run(self, *args: str, timeout: float = RUN_TIMEOUT_S, cores: int = 2):
        """Run snakemake to the end; the CompletedProcess has stdout and stderr merged in .output."""
        proc = subprocess.run(
            self.command(*args, cores=cores),
            cwd=self.root,
            env=subprocess_env() | self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        proc.output = proc.stdout
        out = self.root / f"snakemake-{len(self.log)}.out"
        out.write_text(proc.stdout)
        self.log.append(str(out))
        return proc

    def explain(self, proc) -> str:
        """For an assertion message: the end of a run's output and the logs of its failed jobs."""
        failed = re.findall(r"log: (\S+) \(check log file", proc.output)
        logs = "".join(
            f"\n--- {log}\n{Path(log).read_text()[-3000:]}" for log in failed if Path(log).is_file()
        )
        return f"{proc.output[-4000:]}\n(full output: {self.log[-1]}){logs}"

    def start(self, *args: str, cores: int = 2) -> subprocess.Popen:
        """Start snakemake in its own process group (so a kill reaches every job it started)."""
        out = open(self.root / f"snakemake-{len(self.log)}.out", "w")  # noqa: SIM115
        self.log.append(out.name)
        return subprocess.Popen(
            self.command(*args, cores=cores),
            cwd=self.root,
            env=subprocess_env() | self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running_outputs(self) -> list[str]:
        """Outputs of the jobs Snakemake is running now (its incomplete markers)."""
        return incomplete_outputs(self.root)


def make_workdir(root: Path, model: Path, *extra_config: str) -> Workdir:
    root.mkdir(parents=True, exist_ok=True)
    return Workdir(root=root, model=model, mirror=require_mirror(), extra_config=extra_config)


def incomplete_outputs(workdir: Path) -> list[str]:
    """Snakemake marks each output of a running job in .snakemake/incomplete/<base64 of its path>;
    a marker left behind after a kill is what --rerun-incomplete deletes and recomputes."""
    folder = workdir / ".snakemake" / "incomplete"
    paths = []
    # os.walk, not Path.rglob: Snakemake removes marker folders while we read, and os.walk skips
    # a folder that vanished between listing and reading instead of raising. A name longer than
    # a file name may be is split into folders "@<part>", so the parts are joined before decoding.
    for parent, _, names in os.walk(folder):
        prefix = "".join(part.removeprefix("@") for part in Path(parent).relative_to(folder).parts)
        for name in names:
            encoded = prefix + name
            try:
                paths.append(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return paths


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL snakemake and every job of its process group: no handler runs, as on a node crash."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_until(
    condition: Callable[[], bool],
    proc: subprocess.Popen | None = None,
    timeout: float = RUN_TIMEOUT_S,
    poll: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `condition` until true; fail if `proc` ends first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended (status {proc.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- errors in the output


ERROR_PREFIXES = ("polneurons error:", "polneurons config error:")


def error_lines(text: str, prefix: str = "polneurons") -> list[str]:
    """The one-line user errors in a command's output (each starts with `prefix`)."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def assert_one_line_error(text: str, prefix: str, *words: str) -> str:
    """The output holds exactly one distinct `prefix` line, naming `words`, and no traceback."""
    lines = sorted(set(error_lines(text, prefix)))
    assert len(lines) == 1, f"expected one {prefix!r} line, got {lines}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    line = lines[0]
    assert " -- fix: " in line, line
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def dry_run_counts(*args: str) -> dict[str, int]:
    """Jobs per rule of `snakemake -n <args>`, run from the repository as a user would."""
    proc = subprocess.run(
        [str(SNAKEMAKE), "-n", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", out, re.M)}


# ---------------------------------------------------------------- comparing runs


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(folder: Path, pattern: str) -> dict[str, str]:
    """sha256 of every file matching `pattern` under `folder`, keyed by relative path."""
    return {
        str(path.relative_to(folder)): sha256_of(path)
        for path in sorted(folder.glob(pattern))
        if path.is_file()
    }


def final_tables(results: Path) -> dict[str, str]:
    return digests(results, "tables/*.csv")


def per_run_scores(results: Path) -> dict[str, str]:
    """Ratings, scores and judge-free scores of every run (base, fine-tuned, patched, inhibited)."""
    found = {}
    for name in ("ratings.jsonl", "scores.csv", "loglik.csv", "perplexity.json"):
        found |= digests(results, f"tiny/**/{name}")
    return found


def neuron_files(results: Path) -> dict[str, str]:
    return digests(results, "tiny/**/neurons/**/*.pt") | digests(
        results, "tiny/**/neurons/**/*.sha256"
    )


def make_writable(path: Path) -> None:
    """Undo Snakemake's protected() (read-only) on a file or folder tree so it can be removed."""
    path.chmod(0o755 if path.is_dir() else 0o644)
    if path.is_dir():
        for sub in path.rglob("*"):
            sub.chmod(0o755 if sub.is_dir() else 0o644)


# ---------------------------------------------------------------- shared runs


# A fixture imported into several test modules is instantiated once per module, even with
# session scope; these runs take minutes, so each is made once per session and kept here.
_SESSION: dict[str, object] = {}


def once_per_session(name: str, make: Callable[[], object]):
    """make() the first time `name` is asked for in this session; later, the same result (or the
    same failure, without trying again)."""
    if name not in _SESSION:
        try:
            _SESSION[name] = make()
        except BaseException as exc:
            _SESSION[name] = exc
            raise
    value = _SESSION[name]
    if isinstance(value, BaseException):
        pytest.fail(f"{name} failed earlier in this session: {str(value)[-2000:]}")
    return value


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return once_per_session(
        "tiny_model_dir",
        lambda: build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model") / "model"),
    )


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_model_dir) -> Workdir:
    """One uninterrupted run of the whole tiny workflow, shared by the fault, determinism and
    workflow tests. Read-only for its users: copy before altering anything."""

    def run() -> Workdir:
        work = make_workdir(tmp_path_factory.mktemp("reference"), tiny_model_dir)
        started = time.monotonic()
        proc = work.run()
        work.seconds = time.monotonic() - started
        assert proc.returncode == 0, work.explain(proc)
        assert final_tables(work.results), "the reference run wrote no tables"
        return work

    return once_per_session("reference_run", run)
