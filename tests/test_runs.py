"""Run ids (polneurons.runs): every kind builds, parses back and matches its wildcard pattern."""

import re
from pathlib import Path

import pytest
import yaml

from polneurons import kinds, runs, specs
from polneurons.config import validate_config
from polneurons.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _config(path="config.yaml", **changes):
    cfg = yaml.safe_load((REPO / path).read_text())
    for key, value in changes.items():
        cfg.setdefault(key, {}).update(value)
    return validate_config(cfg)


def _every_kind(config):
    planned = runs.replicate_kinds(config, ["ft", runs.inhibitft_control_kind(config)])
    planned += runs.localized_kinds(config)
    planned += runs.inhibitft_kinds(config) + runs.patch_kinds(config)
    return list(dict.fromkeys(planned))


@pytest.mark.parametrize("training_seeds", [1, 3])
@pytest.mark.parametrize(
    "path", ["config.yaml", "configs/paper.yaml", "tests/workflow/configs/tiny.yaml"]
)
def test_every_run_of_a_config_parses_back_and_matches_the_run_pattern(path, training_seeds):
    raw = yaml.safe_load((REPO / path).read_text()) | {"training_seeds": training_seeds}
    for spec in raw.get("model_registry", {}).values():
        spec["path"] = str(REPO) if spec["path"].startswith("/") else spec["path"]
    config = validate_config(raw)
    pattern = re.compile(runs.run_pattern(config))
    ids = runs.run_ids(config, _every_kind(config)) + [runs.BASE]
    assert len(ids) == len(set(ids))
    for run_id in ids:
        assert pattern.fullmatch(run_id), run_id
        assert str(runs.parse_run(run_id)) == run_id
    trained = re.compile(runs.run_pattern(config, kinds.TRAIN_KIND))
    for run_id in ids:
        run = runs.parse_run(run_id)
        expected = run.kind is None or run.kind.trained
        assert bool(trained.fullmatch(run_id)) == expected, run_id


def test_the_paper_config_has_three_draws_of_each_random_control():
    config = _config("configs/paper.yaml")
    planned = runs.inhibitft_kinds(config) + runs.patch_kinds(config)
    controls = [kinds.parse_kind(k) for k in planned if kinds.parse_kind(k).is_control]
    by_base = {}
    for kind in controls:
        by_base.setdefault(kind.base, []).append(kind.draw)
    assert by_base and all(draws == [0, 1, 2] for draws in by_base.values())
    assert {kinds.parse_kind(k).base for k in planned if k.startswith("patch-random")} == {
        "patch-random"
    }


def test_each_kind_family_says_what_it_needs():
    ft, ift, rnd = (kinds.parse_kind(k) for k in ("ft", "ift-stopgrad-n7.5", "rnd-stopgrad-n5-s2"))
    patch, random = kinds.parse_kind("patch-general"), kinds.parse_kind("patch-random-s1")
    assert ft.trained and not ft.needs_neurons and not ft.is_control
    assert ift.trained and ift.needs_neurons and not ift.is_control and ift.n == 7.5
    assert rnd.trained and rnd.is_control and rnd.draw == 2 and rnd.base == "rnd-stopgrad-n5"
    assert not patch.trained and patch.needs_neurons and patch.patched == "general"
    assert random.is_control and random.patched == "random" and random.base == "patch-random"
    assert re.fullmatch(kinds.CONTROL_KIND, str(rnd)) and re.fullmatch(
        kinds.CONTROL_KIND, "patch-random-s1"
    )
    assert not re.fullmatch(kinds.CONTROL_KIND, str(ift))


def test_builders_and_parsers_agree():
    assert kinds.inhibit_kind("freeze_rows", 5) == "ift-freeze_rows-n5"
    assert kinds.inhibit_kind("freeze_rows", 7.5, draw=0) == "rnd-freeze_rows-n7.5-s0"
    assert kinds.patch_kind("random", 3) == "patch-random-s3"
    assert kinds.split_draw("rnd-freeze_rows-n7.5-s1") == ("rnd-freeze_rows-n7.5", 1)
    assert kinds.split_draw("ift-freeze_rows-n5") == ("ift-freeze_rows-n5", None)
    assert kinds.parse_kind("rnd-freeze_rows-n5", pooled=True).draw is None


@pytest.mark.parametrize(
    "bad",
    [
        "rnd-freeze_rows-n5",
        "ift-freeze_rows-n5-s0",
        "patch-random",
        "patch-general-s0",
        "patch-everything",
        "ft-s0",
        "ift-freeze_rows",
        "ft-t0",
        "ft-t",
        "patch-general-t1",
        "patch-random-s0-t1",
        "patch-dose30-s0",
        "patch-dose30-random",
        "patch-dose-random-s0",
        "null-t1",
        "patch-null",
        "ift-freeze_rows-n5-t0",
        "rnd-freeze_rows-n5-s0-t0",
        "ft-t01",
        "nift-freeze_rows-n5-s0",
        "nift-freeze_rows",
        "",
    ],
)
def test_a_malformed_kind_is_refused_in_one_line(bad):
    with pytest.raises(ConfigError) as err:
        kinds.parse_kind(bad)
    assert "\n" not in str(err.value) and "run kind" in str(err.value)


def test_a_random_control_kind_names_its_draw_and_its_treated_set():
    ift = {"of": "general"}
    assert specs.control_spec("patch-random-s0", ift, "mlp_output") == {
        "treated": "general",
        "site": "mlp_output",
        "draw": 0,
    }
    assert specs.control_spec("rnd-stopgrad-n7.5-s2", ift, "mlp_output") == {
        "treated": "top",
        "n": 7.5,
        "of": "general",
        "site": "mlp_output",
        "draw": 2,
    }
    assert specs.inhibit_spec("ift-freeze_rows-n5", ift, "mlp_output") == {
        "strategy": "freeze_rows",
        "n": 5.0,
        "of": "general",
        "random": False,
        "site": "mlp_output",
    }
    for bad in ("rnd-freeze_rows-n5", "ift-freeze_rows-n5-s0", "patch-random", "patch-general"):
        with pytest.raises(ConfigError):
            specs.control_spec(bad, ift, "mlp_output")


def test_a_path_names_its_run():
    assert runs.run_of_path("results/m/base/ratings.jsonl") == {
        "model": "m",
        "leaning": None,
        "source": None,
        "condition": "base",
    }
    assert runs.run_of_path("results/m/left/race/patch-random-s0/ratings.jsonl") == {
        "model": "m",
        "leaning": "left",
        "source": "race",
        "condition": "patch-random-s0",
    }


def test_the_module_examples_hold():
    import doctest

    assert doctest.testmod(runs).failed == 0 and doctest.testmod(kinds).failed == 0


def test_the_paper_sweep_over_n_is_not_empty():
    """The authors' sweep loop was `range(5, 5)`: no InhibitFT run at all. Ours has one per n."""
    config = _config("configs/paper.yaml")
    inhibited = [kinds.parse_kind(k) for k in runs.inhibitft_kinds(config)]
    swept = sorted({k.n for k in inhibited if k.family == "ift"})
    assert swept == sorted(float(n) for n in config["inhibitft"]["n"]) and len(swept) == 5


def test_training_replicates_share_their_runs_data_and_controls_but_not_their_seed():
    raw = yaml.safe_load((REPO / "configs/paper.yaml").read_text()) | {"training_seeds": 3}
    config = validate_config(raw)
    assert runs.replicate_kinds(config, ["ft"]) == ["ft", "ft-t1", "ft-t2"]
    parsed = [kinds.parse_kind(k) for k in runs.inhibitft_kinds(config)]
    for replicate in (1, 2):
        members = [k for k in parsed if k.replicate == replicate]
        assert {k.first for k in members} == {k.text for k in parsed if k.replicate == 0}
    drawn = kinds.parse_kind("rnd-freeze_rows-n5-s1-t2")
    assert (drawn.first, drawn.base, drawn.draw, drawn.replicate) == (
        "rnd-freeze_rows-n5-s1",
        "rnd-freeze_rows-n5",
        1,
        2,
    )
    assert drawn.is_control and drawn.trained
    assert not re.fullmatch(kinds.CONTROL_KIND, drawn.text)  # a replicate draws no new set
    assert kinds.training_seed(config["seed"], "ft-t2") == config["seed"] + 2
    assert kinds.training_seed(config["seed"], "ft") == config["seed"]
    # a replicate has no random counterpart of its own: tables pair the pooled kinds
    assert kinds.random_counterpart("ift-freeze_rows-n5-t1") is None
    assert kinds.random_counterpart("ift-freeze_rows-n5") == "rnd-freeze_rows-n5"


def test_replicate_zero_is_labelled_only_where_replicates_exist():
    assert kinds.seed_labels(["base", "ft", "patch-general"]) == {
        "base": "base",
        "ft": "ft",
        "patch-general": "patch-general",
    }
    labels = kinds.seed_labels(["base", "ft", "ft-t1", "rnd-x-n5-s0", "rnd-x-n5-s0-t1"])
    assert labels["ft"] == "ft-t0" and labels["ft-t1"] == "ft-t1"
    assert labels["rnd-x-n5-s0"] == "rnd-x-n5-s0-t0" and labels["base"] == "base"
    assert kinds.parse_kind("ft-t0", pooled=True).replicate == 0


def test_a_dose_of_g_and_its_random_control_are_patching_kinds():
    dose, random = kinds.parse_kind("patch-dose30"), kinds.parse_kind("patch-dose7.5-random-s2")
    assert (dose.patched, dose.n, dose.draw, dose.is_control) == ("dose", 30.0, None, False)
    assert (random.patched, random.n, random.draw, random.base) == (
        "random",
        7.5,
        2,
        "patch-dose7.5-random",
    )
    assert (
        random.is_control
        and not random.trained
        and re.fullmatch(kinds.CONTROL_KIND, "patch-dose7.5-random-s2")
    )
    assert kinds.random_counterpart("patch-dose30") == "patch-dose30-random"
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["patching"]["dose"] = [10, 30]
    config = validate_config(raw)
    planned = runs.patch_kinds(config)
    assert "patch-dose10" in planned and "patch-dose30-random-s0" in planned
    assert len([k for k in planned if k.startswith("patch-dose")]) == 2 * (
        1 + config["controls"]["seeds"]
    )


def test_the_null_fine_tune_is_a_trained_kind_localized_like_ft_and_never_replicated():
    null = kinds.parse_kind("null")
    assert null.trained and null.family == "null" and not null.needs_neurons
    assert re.fullmatch(kinds.VANILLA_KIND, "null") and not re.fullmatch(
        kinds.TRAIN_KIND, "null-t1"
    )
    raw = yaml.safe_load((REPO / "config.yaml").read_text()) | {"null_finetune": True}
    assert runs.localized_kinds(validate_config(raw)) == ["ft", "null"]
    assert runs.localized_kinds(_config()) == ["ft"]
    assert kinds.parse_kind("patch-null_general").patched == "null_general"
    raw["null_finetune"] = False
    raw["patching"]["conditions"] = ["general", "null_general"]
    with pytest.raises(ConfigError, match="null_finetune"):
        validate_config(raw)


def test_the_null_control_inhibits_g_nulls_f_n_and_is_paired_with_inhibitft():
    raw = yaml.safe_load((REPO / "config.yaml").read_text()) | {"null_finetune": True}
    raw["inhibitft"] |= {"null_control": True, "strategies": ["freeze_rows"]}
    config = validate_config(raw | {"training_seeds": 2})
    planned = runs.inhibitft_kinds(config)
    assert {"nift-freeze_rows-n5", "nift-freeze_rows-n5-t1"} <= set(planned)
    nift = kinds.parse_kind("nift-freeze_rows-n5-t1")
    assert nift.trained and not nift.is_control and nift.first == "nift-freeze_rows-n5"
    assert re.fullmatch(kinds.INHIBIT_KIND, "nift-freeze_rows-n5-t1")
    # G_null's folder for the null control and the null patching set, the vanilla run's for G's
    assert (
        nift.localized_on == "null"
        and kinds.parse_kind("patch-null_general").localized_on == "null"
    )
    for kind in ("ift-freeze_rows-n5", "rnd-freeze_rows-n5-s0", "patch-general", "patch-dose30"):
        assert kinds.parse_kind(kind).localized_on == "ft", kind
    assert kinds.parse_kind("null").localized_on is None
    spec = specs.inhibit_spec("nift-freeze_rows-n5", config["inhibitft"], "mlp_output")
    assert spec["n"] == 5 and not spec["random"]
    assert kinds.inhibitft_controls("ift-freeze_rows-n5") == [
        "rnd-freeze_rows-n5",
        "nift-freeze_rows-n5",
        "restore-n5",
    ]
    assert kinds.inhibitft_controls("nift-freeze_rows-n5") == []
    assert kinds.inhibitft_controls("ift-freeze_rows-n5-t1") == []  # replicates are pooled first
    assert not any(k.startswith("nift") for k in runs.inhibitft_kinds(_config()))
    raw["null_finetune"] = False
    with pytest.raises(ConfigError, match="null_finetune") as err:
        validate_config(raw)
    assert "\n" not in str(err.value)
    raw["null_finetune"], raw["inhibitft"]["null_control"] = True, [7]
    with pytest.raises(ConfigError, match="inhibitft.null_control \\[7\\] are not among"):
        validate_config(raw)


def test_restore_is_an_untrained_kind_of_f_n_listed_where_inhibitft_restore_names_it():
    restore = kinds.parse_kind("restore-n7.5")
    assert (restore.family, restore.n, restore.trained, restore.localized_on) == (
        "restore",
        7.5,
        False,
        "ft",
    )
    assert re.fullmatch(kinds.KIND, "restore-n5") and not re.fullmatch(
        kinds.TRAIN_KIND, "restore-n5"
    )
    for bad in ("restore-n5-t1", "restore-n5-s0", "restore"):
        with pytest.raises(ConfigError):
            kinds.parse_kind(bad)
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    for restore, expected in (
        (False, []),
        (True, ["restore-n5", "restore-n15"]),
        ([15], ["restore-n15"]),
    ):
        raw["inhibitft"] |= {"n": [5, 15], "restore": restore}
        assert runs.restore_kinds(validate_config(raw)) == expected
    for bad, key in (([], "inhibitft.restore"), ([10], "inhibitft.restore")):
        raw["inhibitft"]["restore"] = bad
        with pytest.raises(ConfigError, match=key) as err:
            validate_config(raw)
        assert "\n" not in str(err.value)
    raw["inhibitft"] |= {
        "restore": True,
        "strategies": ["stopgrad"],
        "finetune": {"method": "full"},
    }
    with pytest.raises(ConfigError, match="inhibitft.restore needs LoRA"):
        validate_config(raw)


def _instances(form: kinds.Form) -> list[str]:
    """Kinds written in `form`, each placeholder filled, with a replicate where it may have one."""
    text = form.written
    for placeholder, value in (
        ("<strategy>", "anchor"),
        ("<n>", "7.5"),
        ("<x>", "30"),
        ("<draw>", "2"),
    ):
        text = text.replace(placeholder, value)
    return [text, f"{text}-t1"] if form.replicated else [text]


@pytest.mark.parametrize("form", kinds.FORMS, ids=lambda form: form.name)
def test_each_declared_form_parses_to_itself_and_each_constraint_follows_its_declaration(form):
    for text in _instances(form):
        kind = kinds.parse_kind(text)
        assert kind.declared is form and kind.family == form.family and kind.text == text
        assert bool(re.fullmatch(kinds.KIND, text))
        assert bool(re.fullmatch(kinds.TRAIN_KIND, text)) == form.trained == kind.trained
        control = form.drawn_by == "random_control" and kind.replicate == 0
        assert bool(re.fullmatch(kinds.CONTROL_KIND, text)) == control
        assert kind.localized_on == form.localized_on
        assert bool(re.fullmatch(kinds.PATCH_KIND, text)) == (form.family == "patch")
        localized = text in {f.localized_on for f in kinds.FORMS}
        assert bool(re.fullmatch(kinds.LOCALIZED_KIND, text)) == localized
    # the wildcard constraints carry no named group: Snakemake wraps each in its own
    assert "?P<" not in kinds.KIND


def test_every_patching_condition_of_the_schema_is_a_declared_form():
    schema = yaml.safe_load((REPO / "src/polneurons/config.schema.yaml").read_text())
    enum = schema["properties"]["patching"]["properties"]["conditions"]["items"]["enum"]
    assert sorted(enum) == sorted(kinds.PATCH_CONDITIONS)
    for condition in enum:
        kind = kinds.parse_kind(kinds.condition_kind(condition), pooled=True)
        assert kind.family == "patch" and kind.draw is None


def test_a_patched_run_answers_the_test_sets_its_form_declares():
    topics, test_sets = ["a", "b", "c"], ["a", "b", "c", "extra"]
    assert kinds.answered_sets("patch-general", topics, test_sets) == [(None, test_sets)]
    own = kinds.answered_sets("patch-specific-random-s1", topics, test_sets)
    assert own == kinds.answered_sets("patch-specific", topics, test_sets)
    assert own == [(t, [t]) for t in topics]
    crossed = kinds.answered_sets("patch-crossed", topics, test_sets)
    assert [t for t, _ in crossed] == topics
    assert all(t not in sets and len(sets) == 2 for t, sets in crossed)


def test_s_ts_random_control_is_drawn_by_its_job_in_each_draw_and_not_read_out_again():
    off = {"inhibitft": {"enabled": False}}
    config = validate_config(
        {"controls": {"seeds": 2}, "patching": {"conditions": ["specific", "specific_random"]}}
        | off
    )
    planned = runs.patch_kinds(config)
    assert planned == ["patch-specific", "patch-specific-random-s0", "patch-specific-random-s1"]
    drawn = kinds.parse_kind(planned[1])
    assert drawn.draw == 0 and not drawn.is_control  # no random_control job: the job draws it
    assert not re.fullmatch(kinds.CONTROL_KIND, planned[1])
    from polneurons.plan import Plan

    assert Plan(config).readout_kinds == ["patch-specific"]
    with pytest.raises(ConfigError, match="specific_random but not specific"):
        validate_config({"patching": {"conditions": ["general", "specific_random"]}} | off)
