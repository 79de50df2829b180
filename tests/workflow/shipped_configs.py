"""Every configuration the repository ships, shrunk for a test run (tests/workflow/
test_shipped_configs.py).

The stacks are read from the README and the Makefile (each `--configfile a.yaml [b.yaml ...]`
they give a user), plus the embedded default, so a new shipped stack is run without editing a
test. A stack is shrunk by one overlay file put last on the command line: it changes only the
model (the tiny random checkpoint), counts (prompts, pairs, steps, draws, replicates, and the
sweeps cut to their first value) and tokens, plus where things are (data mirror, results, the
judge's endpoint). Every other key, including any added to a shipped file later, runs as
shipped: the recipe, the prompt format, the judge backend, the patching conditions, the
InhibitFT strategies and targets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAI, hashed_answer, late, malformed_json, missing_choices, status
from workflow_helpers import REPO, RUN_TIMEOUT_S, Workdir, once_per_session, require_mirror

from polneurons.config import merge_overlay, validate_config

# where users are told to stack configurations
STACK_SOURCES = ("README.md", "Makefile")
EMBEDDED = ("config.yaml",)  # what runs without --configfile
CONFIGFILE = re.compile(r"--configfile((?:\s+[\w./-]+\.yaml)+)")

# counts and tokens of a test run (the tiny configuration's, tests/workflow/configs/tiny.yaml)
TEST_TOPICS = 3
TEST_DATA = {
    "eval_prompts": 3,
    "train_examples": 8,
    "loglik_pairs": 3,
    "judge_pairs": 20,
    "readout_pairs": 3,
}
TEST_FINETUNE = {"epochs": 1, "max_steps": 2, "warmup_steps": 1, "batch_size": 4, "grad_accum": 1}
TEST_RESOURCES = {
    "gpu": 0,
    "threads": 1,
    "mem_mb_base": 500,
    "mem_mb_per_b_params": 0,
    "runtime_base": 5,
    "runtime_per_b_params": 0,
}
# one draw of each random control (the tiny reference run pools two); one training seed, but
# two in the stacks named here, so that the pooling of replicates runs (the CPU study with its
# controls: tests/workflow/test_workflow.py reads its replicates)
MAX_CONTROL_DRAWS = 1
MAX_TRAINING_SEEDS = 1
REPLICATED_STACKS = {"cpu-study-controls": 2}
# the openai judge against the fake endpoint: short timeouts and backoff, retries to spare
TEST_OPENAI = {"timeout": 1.0, "backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 10}
JUDGE_KEY_ENV = "POLNEURONS_TEST_JUDGE_KEY"


def shipped_stacks() -> dict[str, tuple[str, ...]]:
    """{name: config files in order} for the embedded default and every stack the README and the
    Makefile give; the name is the last file's stem."""
    found = [EMBEDDED]
    for source in STACK_SOURCES:
        for match in CONFIGFILE.finditer((REPO / source).read_text()):
            found.append(tuple(match.group(1).split()))
    stacks = {}
    for files in found:
        stacks.setdefault(Path(files[-1]).stem, files)
    return stacks


def shipped_files() -> set[str]:
    """Every configuration file the repository ships."""
    return {"config.yaml", *(f"configs/{p.name}" for p in (REPO / "configs").glob("*.yaml"))}


def merged(files) -> dict:
    """The files merged as Snakemake merges several --configfile (later keys win, mappings
    merge key by key)."""
    config: dict = {}
    for name in files:
        merge_overlay(config, yaml.safe_load((REPO / name).read_text()) or {})
    return config


def _first(values):
    return list(values)[:1]


def _kept(control, n):
    """inhibitft.random_control / null_control / restore on the kept sweep: a list keeps its kept values
    (none left: off); true or false stays."""
    if not isinstance(control, list):
        return control
    return [v for v in control if v in n] or False


def shrink_overlay(files, model: Path, judge_url: str | None = None) -> dict:
    """The overlay that shrinks this stack for a test (module docstring)."""
    full = validate_config(merged(files))
    sources = _first(full["source_topics"])
    topics = [*sources, *(t for t in full["topics"] if t not in sources)][:TEST_TOPICS]
    n = _first(full["inhibitft"]["n"])
    overlay = {
        "models": ["tiny"],
        "model_registry": {"tiny": {"path": str(model), "params_b": 0.001}},
        "topics": topics,
        "source_topics": sources,
        "data": TEST_DATA,
        "finetune": {**TEST_FINETUNE, "max_length": 256},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "scoring": {"n_boot": 50},
        "neurons": {
            "batch_size": 4,
            "shard_size": 2,
            "bootstrap": min(full["neurons"]["bootstrap"], 5),
        },
        "perplexity": {"texts": 2, "max_length": 32},
        "controls": {"seeds": min(full["controls"]["seeds"], MAX_CONTROL_DRAWS)},
        "training_seeds": min(
            full["training_seeds"],
            REPLICATED_STACKS.get(Path(files[-1]).stem, MAX_TRAINING_SEEDS),
        ),
        "resources": TEST_RESOURCES,
        "patching": {"dose": _first(full["patching"]["dose"])},
        "inhibitft": {
            "n": n,
            "random_control": _kept(full["inhibitft"]["random_control"], n),
            "null_control": _kept(full["inhibitft"]["null_control"], n),
            "restore": _kept(full["inhibitft"]["restore"], n),
        },
    }
    for stage in ("patching", "inhibitft"):
        chosen = full[stage]["source_topics"]
        if chosen is not None:
            overlay[stage]["source_topics"] = [t for t in chosen if t in sources] or sources
    overrides = full["inhibitft"]["finetune"]
    shrunk = {k: v for k, v in TEST_FINETUNE.items() if k in overrides}
    if shrunk:
        overlay["inhibitft"]["finetune"] = shrunk
    backend = full["judge"]["backend"]
    if backend == "openai":
        overlay["judge"] = {
            "openai": {**TEST_OPENAI, "base_url": judge_url, "api_key_env": JUDGE_KEY_ENV}
        }
    elif backend == "hf":
        overlay["judge"] = {"hf": {"path": str(model), "batch_size": 4}}
    return overlay


def results_folder(files) -> str:
    """Where this stack writes its results (its `results` key, relative)."""
    return merged(files).get("results", "results")


# ---------------------------------------------------------------- the runs

# A fault on every few requests, then a few stalls past the judge's timeout at the start.
FAULT_CYCLE = (
    None,
    status(429, "0"),
    None,
    status(500),
    None,
    malformed_json,
    None,
    None,
    missing_choices,
    status(503),
    None,
)
STALLS = 2
STALL_S = 2.0  # > the shrunk config's judge.openai.timeout


@pytest.fixture(scope="session")
def fake_judge():
    """The misbehaving OpenAI-compatible endpoint every `openai` run of this session talks to."""

    def start() -> FakeOpenAI:
        fake = FakeOpenAI(answer=hashed_answer, cycle=FAULT_CYCLE).start()
        fake.script.extend([late(STALL_S)] * STALLS)
        return fake

    return once_per_session("fake_judge", start)


def prefix_stack(name: str) -> str | None:
    """The shipped stack this one extends in the same results folder (its files first), if any:
    a user runs it on that stack's results (README), so the test does too."""
    files = shipped_stacks()[name]
    for other, before in shipped_stacks().items():
        if (
            other != name
            and files[: len(before)] == before
            and results_folder(before) == results_folder(files)
        ):
            return other
    return None


# the Makefile's `python -m polneurons.sharing FROM TO`: a recipe that hard-links the recipe-free
# runs of one results folder into another before running the second configuration
SHARING = re.compile(r"-m polneurons\.sharing\s+(\S+)\s+(\S+)")


def sharing_stack(name: str) -> str | None:
    """The shipped stack whose results this one's recipe hard-links the recipe-free runs from
    (`polneurons.sharing`, as the Makefile calls it), if any: the first stack of that folder."""
    folder = results_folder(shipped_stacks()[name])
    for source, target in SHARING.findall((REPO / "Makefile").read_text()):
        if target == folder:
            return next(
                other
                for other, files in shipped_stacks().items()
                if results_folder(files) == source and prefix_stack(other) is None
            )
    return None


def shipped_run(name: str, tmp_path_factory, model: Path, fake: FakeOpenAI) -> dict:
    """Run one shipped stack, shrunk, to the end (after the stack it extends, in its folder; or
    on the runs its recipe shares from another stack's folder); what the run left right after
    it: its Workdir, output, and the dry run that follows."""

    def run() -> dict:
        from polneurons.sharing import link_recipe_free_runs

        files = shipped_stacks()[name]
        prefix = prefix_stack(name)
        root = (
            shipped_run(prefix, tmp_path_factory, model, fake)["work"].root
            if prefix
            else tmp_path_factory.mktemp(f"shipped-{name}")
        )
        shared = sharing_stack(name)
        if shared:
            source = shipped_run(shared, tmp_path_factory, model, fake)["work"].results
            link_recipe_free_runs(source, root / results_folder(files))
        overlay = root / f"shrink-{name}.yaml"
        overlay.write_text(yaml.safe_dump(shrink_overlay(files, model, fake.base_url)))
        work = Workdir(
            root=root,
            model=model,
            mirror=require_mirror(),
            configfiles=(*(REPO / f for f in files), overlay),
            results_folder=results_folder(files),
            env={JUDGE_KEY_ENV: "sk-test-shipped", "NO_PROXY": "127.0.0.1"},
        )
        proc = work.run(timeout=2 * RUN_TIMEOUT_S)
        assert proc.returncode == 0, work.explain(proc)
        dry = work.run("-n", timeout=300)
        return {
            "work": work,
            "output": proc.output,
            "dry_run": dry.output,
            "tables": sorted(p.name for p in (work.results / "tables").glob("*.csv")),
            "requests": len(fake.requests),
        }

    return once_per_session(f"shipped-{name}", run)


@pytest.fixture(scope="session")
def extended_run(tmp_path_factory, tiny_model_dir, fake_judge) -> Workdir:
    """The CPU study with the controls beyond the paper (configs/cpu-study.yaml, then
    configs/cpu-study-controls.yaml on its results), shrunk: two training seeds, a dose of G,
    S_t on the other topics, the null fine-tune with G_null patched and InhibitFT's null
    control. Read-only for its users."""
    return shipped_run("cpu-study-controls", tmp_path_factory, tiny_model_dir, fake_judge)["work"]


@pytest.fixture(scope="session")
def inhibitft_study_run(tmp_path_factory, tiny_model_dir, fake_judge) -> Workdir:
    """The InhibitFT study (configs/inhibitft-study.yaml on config.yaml), shrunk: the anchored
    InhibitFT, its random and null controls, restore (one training seed: the replicates' pooling
    runs in `extended_run`). Read-only."""
    return shipped_run("inhibitft-study", tmp_path_factory, tiny_model_dir, fake_judge)["work"]


def run_config(work: Workdir) -> dict:
    """The validated config a shipped run ran with: its stack and its shrink overlay."""
    files = [Path(f) for f in work.configfiles]
    config: dict = {}
    for path in files:
        merge_overlay(config, yaml.safe_load(path.read_text()) or {})
    return validate_config(config)
