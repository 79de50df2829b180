"""Every configuration the repository ships runs end to end, shrunk only in model, counts and
tokens (tests/workflow/shipped_configs.py), each with its own judge backend: the `openai` judge
against a fake endpoint on loopback that answers 429, 500, malformed bodies and stalls on a
cycle, the classifier judge as trained by the workflow, and the `hf` judge on the tiny model."""

from __future__ import annotations

import itertools
import json
import re

import pandas as pd
import pytest
import yaml
from shipped_configs import (  # noqa: F401 - session fixtures
    FAULT_CYCLE,
    STALLS,
    TEST_DATA,
    fake_judge,  # noqa: F811
    merged,
    sharing_stack,
    shipped_files,
    shipped_run,
    shipped_stacks,
    shrink_overlay,
)
from workflow_helpers import (  # noqa: F401 - session fixtures
    REPO,
    SNAKEMAKE,
    Workdir,
    dry_run_counts,
    require_mirror,
    subprocess_env,
    tiny_model_dir,
)

from polneurons.config import validate_config

# one xdist worker runs every shipped stack (the runs build on each other and are made once)
pytestmark = pytest.mark.xdist_group("shipped")
STACKS = shipped_stacks()


def backend_of(files) -> str:
    return validate_config(merged(files))["judge"]["backend"]


@pytest.fixture(scope="session", params=list(STACKS))
def shipped(request, tmp_path_factory, tiny_model_dir, fake_judge):  # noqa: F811
    return request.param, shipped_run(request.param, tmp_path_factory, tiny_model_dir, fake_judge)


def test_every_shipped_configuration_file_is_in_a_stack_that_runs():
    stacked = {name for files in STACKS.values() for name in files}
    assert shipped_files() <= stacked, shipped_files() - stacked
    assert {"config", "paper"} <= set(STACKS)  # the embedded default and the paper's protocol


# what a shrink overlay may set: the model, counts and tokens, and where things are
SHRINKABLE = {
    "models",
    "model_registry",
    "topics",
    "source_topics",
    "training_seeds",
    "data.eval_prompts",
    "data.train_examples",
    "data.loglik_pairs",
    "data.judge_pairs",
    "data.readout_pairs",
    "finetune.epochs",
    "finetune.max_steps",
    "finetune.warmup_steps",
    "finetune.batch_size",
    "finetune.grad_accum",
    "finetune.max_length",
    "generation.max_new_tokens",
    "generation.batch_size",
    "scoring.n_boot",
    "neurons.batch_size",
    "neurons.shard_size",
    "neurons.bootstrap",
    "perplexity.texts",
    "perplexity.max_length",
    "controls.seeds",
    "resources",
    "patching.dose",
    "patching.source_topics",
    "inhibitft.n",
    "inhibitft.random_control",
    "inhibitft.null_control",
    "inhibitft.restore",
    "inhibitft.source_topics",
    "inhibitft.finetune",
    "judge.openai",
    "judge.hf",
}


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in SHRINKABLE:
            keys |= _leaf_keys(value, f"{path}.")
        else:
            keys.add(path)
    return keys


@pytest.mark.parametrize("name", list(STACKS))
def test_a_shrink_overlay_sets_only_model_counts_tokens_and_locations(name, tmp_path):
    overlay = shrink_overlay(STACKS[name], tmp_path, "http://127.0.0.1:1/v1")
    assert _leaf_keys(overlay) <= SHRINKABLE, _leaf_keys(overlay) - SHRINKABLE
    shipped = validate_config(merged(STACKS[name]))
    assert set(overlay.get("judge", {})) <= {"openai", "hf"}  # never the backend itself
    assert overlay["source_topics"] == shipped["source_topics"][:1]
    assert overlay["data"] == TEST_DATA


@pytest.mark.integration
def test_each_shipped_configuration_finishes_with_every_table(shipped):
    name, run = shipped
    work, files = run["work"], STACKS[name]
    assert "Nothing to be done" in run["dry_run"], run["dry_run"][-3000:]
    config = validate_config(merged(files))
    expected = {"judge_agreement.csv", "claims.csv", "ts_cg.csv", "neuron_sets.csv"}
    if config["patching"]["enabled"]:
        expected |= {"patching.csv", "patching_contrasts.csv"}
    if config["inhibitft"]["enabled"]:
        expected |= {"inhibitft_main.csv", "inhibition_effect.csv"}
    assert expected <= set(run["tables"]), expected - set(run["tables"])
    judge = pd.read_csv(work.results / "tables" / "judge_agreement.csv")
    overall = judge[judge["scope"] == "all"].iloc[0]
    assert overall["backend"] == config["judge"]["backend"]
    assert overall["n_answers"] > 0
    trained_judge = (work.results / "judge" / "classifier.pkl").exists()
    assert trained_judge == (config["judge"]["backend"] == "classifier")


@pytest.mark.integration
def test_a_recipe_on_shared_runs_recomputes_none_of_them(
    tmp_path_factory,
    tiny_model_dir,  # noqa: F811
    fake_judge,  # noqa: F811
):
    """The Makefile's `python -m polneurons.sharing` (the CPU study's paper-formula half): the
    second configuration localizes, patches and inhibits on the first one's fine-tunes, hard
    links of the same files, and trains, generates or judges none of the shared runs again."""
    shared = {name: sharing_stack(name) for name in STACKS if sharing_stack(name)}
    assert shared == {"cpu-study-paper-formula": "cpu-study"}
    for name, source in shared.items():
        run = shipped_run(name, tmp_path_factory, tiny_model_dir, fake_judge)
        rules = set(re.findall(r"^(?:local)?rule (\w+):", run["output"], re.M))
        assert not rules & {"download_data", "prepare_model", "train_judge", "finetune"}, rules
        assert {"localize_neurons", "patch_generate", "inhibitft"} <= rules
        first = shipped_run(source, tmp_path_factory, tiny_model_dir, fake_judge)["work"].results
        for path in first.glob("tiny/*/*/ft/ratings.jsonl"):
            linked = run["work"].results / path.relative_to(first)
            assert linked.stat().st_ino == path.stat().st_ino, linked


@pytest.mark.integration
def test_the_openai_judge_survives_faults_and_the_judge_table_names_it(
    tmp_path_factory,
    tiny_model_dir,  # noqa: F811
    fake_judge,  # noqa: F811
):
    names = [name for name, files in STACKS.items() if backend_of(files) == "openai"]
    assert "paper" in names  # configs/paper.yaml uses the paper's judge
    for name in names:
        run = shipped_run(name, tmp_path_factory, tiny_model_dir, fake_judge)
        tables = run["work"].results / "tables"
        judge = pd.read_csv(tables / "judge_agreement.csv").iloc[0]
        cache = run["work"].results / "judge" / "openai_cache.jsonl"
        lines = [json.loads(line) for line in cache.read_text().splitlines()]
        assert judge["cached_answers"] == len(lines) == len({line["key"] for line in lines})
        assert judge["judge"].startswith("gpt-4o-mini at http://127.0.0.1:")
        assert pd.isna(judge["kappa"]) and "not measured" in judge["why_undefined"]
        # every answer rated: no `error` left by a fault the judge gave up on
        assert judge["errors"] == 0 and judge["n_answers"] > 0
        md = (tables / "judge_agreement.md").read_text()
        assert "not measured" in md
    # each kind of fault was served, and retried past: more requests than answers cached
    assert fake_judge.faults >= len(FAULT_CYCLE) - FAULT_CYCLE.count(None) + STALLS
    assert len(fake_judge.requests) > fake_judge.faults


@pytest.mark.parametrize("backend", ["hf", "classifier"])
def test_the_paper_dag_trains_the_classifier_judge_only_when_it_rates(backend, tmp_path):
    """configs/paper.yaml as shipped (the openai judge): tests/workflow/test_workflow.py's dry
    run; here the other backends, on one model and one source topic of it."""
    counts = dry_run_counts(
        "--configfile",
        "configs/paper.yaml",
        "--config",
        f"results={tmp_path}/results",
        f"judge={{backend: {backend}}}",
        "models=[qwen25_3b]",
        "source_topics=[crime_and_gun]",
    )
    assert counts["judge"] > 0 and counts["judge_table"] == 1
    assert ("train_judge" in counts) == (backend == "classifier")


@pytest.mark.integration
def test_the_hf_judge_rates_with_a_local_model_and_undefined_scores_say_why(
    tmp_path,
    tiny_model_dir,  # noqa: F811
):
    """The `hf` backend on the tiny random model, which names no label: every answer is an
    error, no score is defined, and the stance table says why instead of a number."""
    files = STACKS["paper"]
    overlay = shrink_overlay(files, tiny_model_dir)
    overlay["judge"] = {"backend": "hf", "hf": {"path": str(tiny_model_dir), "batch_size": 4}}
    overlay["training_seeds"] = 1
    (tmp_path / "hf.yaml").write_text(yaml.safe_dump(overlay))
    work = Workdir(
        root=tmp_path,
        model=tiny_model_dir,
        mirror=require_mirror(),
        configfiles=(*(REPO / f for f in files), tmp_path / "hf.yaml"),
    )
    tscg = work.results / "tables" / "ts_cg.csv"
    proc = work.run(str(tscg), str(work.results / "tables" / "stance_shift.csv"))
    assert proc.returncode == 0, work.explain(proc)
    assert "train_judge" not in proc.output
    ratings = [
        json.loads(line)["rating"]
        for path in work.results.glob("tiny/**/ratings.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert ratings and set(ratings) == {"error"}
    shift = pd.read_csv(work.results / "tables" / "stance_shift.csv")
    assert shift["why_undefined"].fillna("").str.len().gt(0).all()


def test_each_overlay_names_the_file_it_is_stacked_on():
    for files in STACKS.values():
        for base, overlay in itertools.pairwise(files):
            extends = merged([overlay]).get("extends")
            assert (
                extends
                and (REPO / overlay).parent.joinpath(extends).resolve() == (REPO / base).resolve()
            ), overlay
        assert "extends" not in merged(files[:1])  # the first file of a stack stands alone


def test_an_overlay_alone_or_in_the_wrong_order_is_refused_in_one_line():
    from polneurons.config import check_stack
    from polneurons.errors import ConfigError

    stacks = [files for files in STACKS.values() if len(files) > 1]
    assert stacks, "no overlay is shipped"
    for files in stacks:
        paths = [REPO / f for f in files]
        check_stack(paths)  # as shipped: accepted
        for wrong in (paths[1:], paths[::-1]):
            with pytest.raises(ConfigError) as error:
                check_stack(wrong)
            message = str(error.value)
            assert "\n" not in message and f"--configfile {files[0]} {files[-1]}" in message
