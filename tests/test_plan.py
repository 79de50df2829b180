"""The plan of a configuration (polneurons.plan): which runs each role and each table gets, over
the configurations the repository ships (each stack the README and the Makefile give) and the
tiny test configuration; the expected counts are derived from each config's own keys."""

from __future__ import annotations

import doctest

import pytest
import yaml
from shipped_configs import merged, shipped_stacks
from workflow_helpers import TINY_CONFIG

from polneurons import kinds, runs
from polneurons import plan as plan_module
from polneurons.config import ConfigError, validate_config
from polneurons.plan import Plan


def tiny() -> dict:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["model_registry"]["tiny"]["path"] = "some-org/tiny"  # a hub id: no folder checked
    return config


CONFIGS = {name: (lambda files=files: merged(files)) for name, files in shipped_stacks().items()}
CONFIGS["tiny"] = tiny
CONFIGS["tiny, two seeds, null fine-tune, every condition"] = lambda: {
    **tiny(),
    "training_seeds": 2,
    "null_finetune": True,
    "patching": {
        "conditions": ["general", "specific", "random", "all", "crossed", "null_general"],
        "dose": [10, 50],
    },
    "inhibitft": {"n": [5, 10], "random_control": [10], "null_control": True},
}
CONFIGS["tiny, both leanings, the right one localized"] = lambda: {
    **tiny(),
    "leanings": ["left", "right"],
    "neurons": {"leanings": ["right"]},
    "null_finetune": True,
}
CONFIGS["tiny, no patching, no InhibitFT"] = lambda: {
    **tiny(),
    "patching": {"enabled": False},
    "inhibitft": {"enabled": False},
}


@pytest.fixture(params=list(CONFIGS))
def config(request) -> dict:
    return validate_config(CONFIGS[request.param]())


def cells(config, sources=None, localized=False) -> int:
    """(model, leaning, source) cells of a stage (of the localized leanings only if
    `localized`: the patching and InhibitFT stages)."""
    leanings = (localized and config["neurons"]["leanings"]) or config["leanings"]
    return len(config["models"]) * len(leanings) * len(sources or config["source_topics"])


def test_every_role_lists_each_run_once(config):
    plan = Plan(config)
    for role in (plan.judged, plan.trained, plan.patched, plan.vanilla, plan.stance_runs):
        ids = role()
        assert len(ids) == len(set(ids)), role.__name__


def test_the_judged_runs_are_the_base_model_vanilla_patched_and_inhibitft_runs(config):
    plan = Plan(config)
    judged = plan.judged()
    seeds = config["training_seeds"]
    assert [r for r in judged if r.endswith("/base")] == [f"{m}/base" for m in config["models"]]
    assert set(plan.vanilla()) <= set(judged)
    assert len(plan.vanilla()) == cells(config) * seeds
    patched = [r for r in judged if "/patch-" in r]
    if config["patching"]["enabled"]:
        per_cell = len(runs.patch_kinds(config))
        assert len(patched) == cells(config, plan.patch_sources, localized=True) * per_cell
        assert {r.split("/")[2] for r in patched} == set(plan.patch_sources)
    else:
        assert patched == []
    inhibited = [r for r in judged if "ift-" in r or "/rnd-" in r]
    n_inhibited = cells(config, plan.inhibitft_sources, localized=True) * len(plan.inhibitft_kinds)
    assert len(inhibited) == n_inhibited


def test_the_trained_runs_are_every_fine_tune_and_no_patched_or_base_run(config):
    plan = Plan(config)
    trained = plan.trained()
    assert all(runs.parse_run(r.split("/", 1)[1]).kind.trained for r in trained)
    ift = config["inhibitft"]
    # the null run: once, in the localized leanings only (its data has no leaning)
    expected = cells(config) * config["training_seeds"]
    expected += cells(config, localized=True) * config["null_finetune"]
    if ift["enabled"]:
        extra_control = config["training_seeds"] if ift["finetune"] else 0  # ftctl
        n_inhibit = 0
        for n in ift["n"]:
            n_inhibit += 1
            n_inhibit += config["controls"]["seeds"] * runs.random_control_at(ift, n)
            n_inhibit += runs.random_control_at(ift, n, "null_control")
        n_inhibit *= len(ift["strategies"]) * config["training_seeds"]
        expected += cells(config, plan.inhibitft_sources, localized=True) * n_inhibit
        expected += cells(config, plan.inhibitft_sources) * extra_control
    assert len(trained) == expected


def test_a_control_draw_is_listed_once_whatever_its_training_replicates(config):
    plan = Plan(config)
    draws = plan.control_draws(plan.inhibitft_kinds, plan.inhibitft_sources)
    assert all("-t" not in r.rsplit("/", 1)[1] for r in draws)
    ift = config["inhibitft"]
    per_cell = sum(
        config["controls"]["seeds"] * runs.random_control_at(ift, n) for n in ift["n"]
    ) * len(ift["strategies"])
    expected = cells(config, plan.inhibitft_sources, localized=True) * per_cell
    assert len(draws) == (expected if ift["enabled"] else 0)


def test_the_claims_table_reads_the_tables_of_every_stage_that_runs(config):
    tables = Plan(config).claim_tables()
    assert {"tscg", "neuron_sets"} <= set(tables)
    assert ("patching" in tables) == config["patching"]["enabled"]
    assert ("inhibitft" in tables) == config["inhibitft"]["enabled"]
    crossed = config["patching"]["enabled"] and "crossed" in config["patching"]["conditions"]
    assert ("specificity" in tables) == crossed
    readout = crossed and Plan(config).readout  # S_t on the other topics' pairs, read out
    assert ("specificity_ll" in tables) == readout


def test_the_patching_table_reads_crossed_runs_apart(config):
    plan = Plan(config)
    crossed, rated = plan.crossed_runs(), plan.patching_runs()
    assert not set(crossed) & set(rated)
    assert all(r.endswith("/patch-crossed") for r in crossed)
    expected = cells(config, plan.patch_sources, localized=True) if plan.crossed_kinds else 0
    assert len(crossed) == expected


def test_stage_sources_default_to_every_source_topic():
    config = validate_config({**tiny(), "source_topics": ["crime_and_gun", "race"]})
    plan = Plan(config)
    assert plan.patch_sources == plan.inhibitft_sources == ["crime_and_gun", "race"]
    config = validate_config(
        {
            **tiny(),
            "source_topics": ["crime_and_gun", "race"],
            "patching": {"source_topics": ["race"]},
        }
    )
    assert Plan(config).patch_sources == ["race"]


def test_the_module_examples_hold():
    assert doctest.testmod(plan_module).failed == 0


def test_restore_runs_are_judged_never_trained_and_one_per_listed_n(config):
    plan = Plan(config)
    restored = plan.restore_runs()
    ift = config["inhibitft"]
    listed = (
        [n for n in ift["n"] if runs.random_control_at(ift, n, "restore")] if ift["enabled"] else []
    )
    assert len(restored) == cells(config, plan.inhibitft_sources) * len(listed)
    assert set(restored) <= set(plan.judged()) and not set(restored) & set(plan.trained())


def test_the_readout_reads_inhibitfts_ceiling_with_its_random_draws(config):
    plan = Plan(config)
    ift = config["inhibitft"]
    expected = []
    if plan.readout and ift["enabled"] and ift["of"] == "general":
        expected = [k for n in ift["n"] for k in kinds.dose_kinds(n, runs.control_draws(config))]
    assert plan.ceiling_kinds == (expected if ift["enabled"] and ift["of"] == "general" else [])
    assert set(expected) <= set(plan.readout_kinds)
    assert len(plan.readout_kinds) == len(set(plan.readout_kinds))


def test_a_leaning_left_out_of_neurons_leanings_is_fine_tuned_and_rated_only():
    config = validate_config(CONFIGS["tiny, both leanings, the right one localized"]())
    plan = Plan(config)
    left = [r for r in plan.judged() if r.split("/")[1] == "left"]
    assert left and all(r.endswith("/ft") for r in left)
    assert set(left) <= set(plan.trained()) & set(plan.stance_runs())
    for role in (plan.localized, plan.patched, plan.inhibitft_runs, plan.readout_runs):
        assert {r.split("/")[1] for r in role() if not r.endswith("/base")} == {"right"}, role
    with pytest.raises(ConfigError, match="neurons.leanings"):
        validate_config({**tiny(), "neurons": {"leanings": ["left"]}})
