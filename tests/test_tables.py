"""Table logic (polneurons.tables) on small hand-made frames."""

import doctest

import numpy as np
import pandas as pd
import pytest

from polneurons.tables import claims, common, inhibitft, neurons, patching, stance, training


def _scores(values, replicate=None):
    rows = [
        {"model": "m", "source": src, "condition": cond, "test_set": ts, "S": s}
        for (cond, src, ts), s in values.items()
    ]
    frame = pd.DataFrame(rows)
    return frame if replicate is None else frame.assign(replicate=replicate)


def test_recovered_share_is_the_patched_shift_over_the_fine_tuning_shift_per_set_and_pooled():
    values = {
        ("base", "-", "a"): 0.0,
        ("base", "-", "b"): 1.0,
        ("ft", "t", "a"): 2.0,
        ("ft", "t", "b"): 1.0,  # FT did not move b: its share is undefined
        ("patch-general", "t", "a"): 1.0,
        ("patch-general", "t", "b"): 1.5,
        ("patch-all", "t", "a"): 1.6,
        ("patch-all", "t", "b"): 1.0,
    }
    table = patching.patching_recovered(_scores(values)).set_index(["condition", "test_set"])
    assert table.loc[("patch-general", "a"), "recovered"] == pytest.approx(0.5)
    assert np.isnan(table.loc[("patch-general", "b"), "recovered"])
    # pooled: (1 + 0.5) shifted of (2 + 0) moved by FT
    assert table.loc[("patch-general", "all"), "recovered"] == pytest.approx(1.5 / 2.0)
    assert table.loc[("patch-general", "a"), "recovered_vs_all"] == pytest.approx(0.5 / 0.8)
    assert table.loc[("patch-all", "all"), "recovered_vs_all"] == pytest.approx(1.0)


def test_without_the_all_condition_the_share_of_the_ceiling_is_undefined():
    values = {("base", "-", "a"): 0.0, ("ft", "t", "a"): 1.0, ("patch-general", "t", "a"): 0.3}
    table = patching.patching_recovered(_scores(values))
    assert table["recovered_vs_all"].isna().all()


def test_replicates_are_kept_apart():
    one = {("base", "-", "a"): 0.0, ("ft", "t", "a"): 1.0, ("patch-general", "t", "a"): 0.2}
    two = {**one, ("patch-general", "t", "a"): 0.6}
    frame = pd.concat([_scores(one, 0), _scores(two, 1)], ignore_index=True)
    table = patching.patching_recovered(frame)
    general = table[(table["condition"] == "patch-general") & (table["test_set"] == "a")]
    assert sorted(general["recovered"].round(6)) == [0.2, 0.6]


@pytest.mark.parametrize("module", [claims, common, inhibitft, neurons, patching, stance, training])
def test_the_module_examples_hold(module):
    assert doctest.testmod(module).failed == 0


def _set(coords, n_layers=4, width=2):
    from polneurons.neurons import NeuronSet

    return NeuronSet(
        [c[0] for c in coords], [c[1] for c in coords], [0.0] * len(coords), "s", n_layers, width
    )


def test_a_set_is_described_by_size_share_and_layer_quartiles():
    row = neurons.describe_set(_set([(0, 0), (1, 0), (3, 0), (3, 1)]), total=8)
    assert row["size"] == 4 and row["share_of_all"] == 0.5
    assert row["mean_layer"] == pytest.approx((0 + 1 + 3 + 3) / 4)
    assert row["layer_q25"] == pytest.approx(0.75) and row["layer_q75"] == pytest.approx(3.0)
    empty = neurons.describe_set(_set([]), total=8)
    assert empty["size"] == 0 and empty["mean_layer"] is None


def test_overlap_of_g_pairs_sources_of_the_same_model_and_leaning_only():
    generals = {
        ("m", "right", "a"): _set([(0, 0), (1, 0)]),
        ("m", "right", "b"): _set([(1, 0), (2, 0)]),
        ("m", "left", "a"): _set([(0, 0)]),
    }
    frame = neurons.general_overlap(generals)
    assert len(frame) == 1
    assert frame.iloc[0][["source_a", "source_b"]].tolist() == ["a", "b"]
    assert frame.iloc[0]["jaccard"] == pytest.approx(1 / 3)


def test_the_ablation_curve_has_a_point_per_arm_and_metric_and_the_control_as_a_line():
    main = pd.DataFrame(
        {
            "model": ["m", "m", "mean"],
            "source": ["mean", "mean", "mean"],
            "condition": ["ift-freeze_rows-n5", "rnd-freeze_rows-n5", "ift-freeze_rows-n5"],
            **{f"{m}_x{s}": [0.1, 0.2, 0.3] for m in ("CG", "TS") for s in ("", "_lo", "_hi")},
            "CG_ft": [0.5, 0.5, 0.5],
            "TS_ft": [0.9, 0.9, 0.9],
        }
    )
    curve = inhibitft.ablation_curve(main, "ftctl")
    assert set(curve["condition"]) == {
        "InhibitFT (freeze_rows)",
        "random (freeze_rows)",
        "vanilla (ftctl)",
    }
    assert len(curve) == 2 * 2 + 2  # two arms x (CG, TS), the control's two lines
    line = curve[curve["condition"] == "vanilla (ftctl)"].set_index("metric")["value"]
    assert line.to_dict() == {"CG": 0.5, "TS": 0.9}
    assert curve.loc[curve["condition"] != "vanilla (ftctl)", "n"].eq(5.0).all()


def test_the_loglik_summary_pools_the_draws_of_a_random_control():
    rows = []
    for condition, cg in (("ft", 0.3), ("rnd-x-n5-s0", 0.1), ("rnd-x-n5-s1", 0.3)):
        for topic, value in (("TS_ll", 1.0), ("CG_ll", cg)):
            rows.append(
                dict(
                    model="m",
                    leaning="right",
                    source="a",
                    condition=condition,
                    topic=topic,
                    dS_ll=value,
                )
            )
    summary = inhibitft.loglik_summary(pd.DataFrame(rows)).set_index("condition")
    assert summary.loc["rnd-x-n5", "CG_ll"] == pytest.approx(0.2)
    assert summary.loc["rnd-x-n5", "draws"] == 2 and summary.loc["ft", "draws"] == 1


def test_patching_contrasts_subtract_each_controls_share_with_paired_replicate_cis():
    def scores(general, random, replicate=None):
        values = {
            ("base", "-", "a"): 0.0,
            ("ft", "t", "a"): 1.0,
            ("patch-general", "t", "a"): general,
            ("patch-random", "t", "a"): random,
        }
        return _scores(values, replicate)

    point = scores(0.6, 0.2)
    reps = pd.concat([scores(0.6 + d, 0.2 + d / 2, r) for r, d in enumerate((-0.1, 0, 0.1))])
    table = patching.patching_contrasts(point, reps, alpha=0.5)
    assert table[["treated", "control"]].values.tolist() == [["patch-general", "patch-random"]]
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(0.4)
    # replicate differences 0.35, 0.4, 0.45: the 25% and 75% quantiles
    assert row["difference_lo"] == pytest.approx(0.375) and row["difference_hi"] == pytest.approx(
        0.425
    )


def test_each_dose_of_g_is_contrasted_with_its_own_random_set():
    values = {
        ("base", "-", "a"): 0.0,
        ("ft", "t", "a"): 1.0,
        ("patch-general", "t", "a"): 0.6,
        ("patch-dose30", "t", "a"): 0.3,
        ("patch-dose30-random", "t", "a"): 0.1,
        ("patch-dose10", "t", "a"): 0.2,
        ("patch-null_general", "t", "a"): 0.4,
    }
    point = _scores(values)
    reps = pd.concat([_scores(values, r) for r in range(3)])
    table = patching.patching_contrasts(point, reps, alpha=0.5).set_index(["treated", "control"])
    assert table.loc[("patch-dose30", "patch-dose30-random"), "difference"] == pytest.approx(0.2)
    assert ("patch-dose10", "patch-dose10-random") not in table.index  # its control did not run
    recovered = patching.patching_recovered(point)
    sizes = {("m", "r", "t", c): n for c, n in [("patch-dose30", 3), ("patch-general", 10)]}
    sizes[("m", "r", "t", "patch-dose30-random")] = 3
    sizes[("m", "r", "t", "patch-null_general")] = 8
    curve = patching.dose_curve(
        recovered.assign(leaning="r", recovered_lo=0.0, recovered_hi=1.0), sizes
    )
    assert curve["condition"].tolist() == [
        "patch-dose10",
        "patch-dose30",
        "patch-general",
        "patch-null_general",
        "patch-dose30-random",
    ]
    assert curve["arm"].tolist() == ["G", "G", "G", "G_null", "random"]
    assert curve["dose"].tolist() == [10.0, 30.0, 100.0, 100.0, 30.0]
    assert curve["neurons"].tolist()[1:] == [3, 10, 8, 3]  # dose10 has no patched run's size
    assert curve["recovered"].tolist() == pytest.approx([0.2, 0.3, 0.6, 0.4, 0.1])


@pytest.mark.parametrize(
    ("lo", "hi", "side", "verdict"),
    [
        (0.1, 0.5, "above 0", "holds"),
        (-0.1, 0.5, "above 0", "not shown"),
        (-0.5, -0.1, "above 0", "reversed"),
        (-0.5, -0.1, "below 0", "holds"),
        (float("nan"), 0.2, "above 0", "undefined"),
    ],
)
def test_a_verdict_follows_the_side_of_zero_the_ci_lies_on(lo, hi, side, verdict):
    assert common.interval_verdict(lo, hi, side) == verdict


MARGIN = 0.8  # scoring.ts_kept_margin of the tests


@pytest.mark.parametrize(
    "lo, hi, verdict",
    [
        (0.85, 1.2, "holds"),
        (0.4, 0.75, "fails"),
        (0.6, 1.1, "not shown"),
        (np.nan, 1.0, "undefined"),
    ],
)
def test_ts_kept_is_a_non_inferiority_rule_that_can_hold_fail_or_not_show(lo, hi, verdict):
    assert common.non_inferiority_verdict(lo, hi, MARGIN) == verdict
    run = dict(model="m", leaning="right", source="a", condition="ift-freeze_rows-n5")
    inhibitft = pd.DataFrame(
        [{**run, "relative": 0.1, "relative_lo": 0.0, "relative_hi": 0.2, "ts_kept": 1.0,
          "ts_kept_lo": lo, "ts_kept_hi": hi}]
    )  # fmt: skip
    versus = pd.DataFrame(columns=["model", "leaning", "source", "treated", "control"])
    tscg = pd.DataFrame([dict(run, TS=1.0, CG=0.3, CG_lo=0.1, CG_hi=0.5)])
    table = claims.claims_table(
        dict(tscg=tscg, inhibitft=inhibitft, versus=versus), ts_kept_margin=MARGIN
    )
    row = table[table["claim"].str.contains("keeps TS")].iloc[0]
    assert row["verdict"] == verdict and "0.8" in row["rule"]


@pytest.mark.parametrize(
    "left, right, verdict",
    [
        ((-0.6, -0.1), (0.2, 0.9), "holds"),
        ((0.1, 0.6), (-0.9, -0.2), "reversed"),
        ((-0.6, 0.1), (0.2, 0.9), "not shown"),  # the left CI holds 0
        ((-0.6, -0.1), (-0.9, -0.2), "not shown"),  # both moved left: no sign that follows
        ((float("nan"), float("nan")), (0.2, 0.9), "undefined"),
    ],
)
def test_cg_follows_the_leaning_only_when_both_fine_tunes_move_their_own_way(left, right, verdict):
    assert common.leaning_sign_verdict(left, right) == verdict
    run = dict(model="m", source="a", condition="ft", TS=0.5)
    tscg = pd.DataFrame(
        [
            {**run, "leaning": "left", "CG": sum(left) / 2, "CG_lo": left[0], "CG_hi": left[1]},
            {**run, "leaning": "right", "CG": sum(right) / 2, "CG_lo": right[0], "CG_hi": right[1]},
        ]
    )
    table = claims.claims_table({"tscg": tscg}, ts_kept_margin=MARGIN)
    row = table[table["claim"].str.contains("follows the fine-tune's leaning")].iloc[0]
    assert row["verdict"] == verdict and row["leaning"] == "right vs left"
    one_leaning = claims.claims_table({"tscg": tscg.iloc[1:]}, ts_kept_margin=MARGIN)
    assert not one_leaning["claim"].str.contains("follows the fine-tune's leaning").any()


def test_the_claims_table_states_each_claim_its_control_and_a_verdict_by_its_rule():
    run = dict(model="m", leaning="left", source="a")
    tscg = pd.DataFrame([{**run, "TS": -1.0, "CG": -0.4, "CG_lo": -0.7, "CG_hi": -0.1}])
    neuron_sets = pd.DataFrame([{**run, "set": "general", "n_layers": 30, "layer_q25": 8.0}])
    pooled = dict(**run, test_set="all")
    patching = pd.DataFrame(
        [
            {
                **pooled,
                "condition": "patch-general",
                "recovered": 0.5,
                "recovered_lo": 0.2,
                "recovered_hi": 0.8,
            },
            {
                **pooled,
                "condition": "patch-random",
                "recovered": 0.1,
                "recovered_lo": -0.1,
                "recovered_hi": 0.3,
            },
            {
                **pooled,
                "condition": "patch-specific",
                "recovered": 0.1,
                "recovered_lo": -0.2,
                "recovered_hi": 0.4,
            },
        ]
    )
    contrasts = pd.DataFrame(
        [{**run, "treated": "patch-general", "control": "patch-random", "difference": 0.4,
          "difference_lo": 0.1, "difference_hi": 0.7}]
    )  # fmt: skip
    inhibitft = pd.DataFrame(
        [{**run, "condition": "ift-freeze_rows-n5", "relative": 0.2, "relative_lo": 0.05,
          "relative_hi": 0.35, "ts_kept": 0.9, "ts_kept_lo": 0.7, "ts_kept_hi": 0.95}]
    )  # fmt: skip
    versus = pd.DataFrame(
        [{**run, "treated": "ift-freeze_rows-n5", "control": "rnd-freeze_rows-n5",
          "relative": 0.15, "relative_lo": -0.05, "relative_hi": 0.3}]
    )  # fmt: skip
    made = dict(
        tscg=tscg,
        neuron_sets=neuron_sets,
        patching=patching,
        contrasts=contrasts,
        inhibitft=inhibitft,
        versus=versus,
    )
    table = claims.claims_table(made, ts_kept_margin=MARGIN)

    def verdict(prefix):
        return table.loc[table["claim"].str.startswith(prefix), "verdict"].item()

    assert list(table.columns) == claims.CLAIM_COLUMNS
    # a left fine-tune: CG below 0 on the side of TS holds
    assert verdict("1: fine-tuning on one topic sh") == "holds"
    assert verdict("2: G sits in middle and late l") == "fails"  # 8 < 30 / 3
    assert verdict("2: S_t patched on its own topi") == "not shown"
    assert verdict("2: G recovers more of the shif") == "holds"
    # the reduction's CI is above 0 but InhibitFT minus random is not: not shown
    assert verdict("3: InhibitFT at n = 5 cuts CG ") == "not shown"
    assert verdict("3: InhibitFT at n = 5 keeps TS") == "not shown"  # [0.7, 0.95] holds 0.8
    random_row = table[table["claim"].str.startswith("3: InhibitFT at n = 5 cuts")].iloc[0]
    assert random_row["control_value"] == pytest.approx(0.05)  # 0.2 - 0.15: random's own
    only_stance = claims.claims_table({"tscg": tscg}, ts_kept_margin=MARGIN)
    assert len(only_stance) == 1
    assert not table["claim"].str.contains("G_null").any()  # no null control ran

    # the null control (F_n of G_null): its own row, the paired difference decides
    null = {**run, "treated": "ift-freeze_rows-n5", "control": "nift-freeze_rows-n5"}
    null |= {"relative": 0.12, "relative_lo": 0.02, "relative_hi": 0.22}
    with_null = pd.concat([versus, pd.DataFrame([null])], ignore_index=True)
    table = claims.claims_table({**made, "versus": with_null}, ts_kept_margin=MARGIN)
    null_row = table[table["claim"].str.contains("more than on G_null")].squeeze()
    assert null_row["control"] == "nift-freeze_rows-n5" and null_row["verdict"] == "holds"
    assert null_row["control_value"] == pytest.approx(0.08)  # 0.2 - 0.12: the null control's own
    assert verdict("3: InhibitFT at n = 5 cuts CG ") == "not shown"  # still against random

    # a dose of G against its random set, and S_t's specificity
    dose = [
        {**pooled, "condition": c, "recovered": v, "recovered_lo": v - 0.1, "recovered_hi": v + 0.1}
        for c, v in (("patch-dose30", 0.3), ("patch-dose30-random", 0.25))
    ]
    dosed = pd.concat([patching, pd.DataFrame(dose)], ignore_index=True)
    dose_contrast = {**run, "treated": "patch-dose30", "control": "patch-dose30-random"}
    dose_contrast |= {"difference": 0.05, "difference_lo": -0.1, "difference_hi": 0.2}
    contrasts = pd.concat([contrasts, pd.DataFrame([dose_contrast])], ignore_index=True)
    specific = pd.DataFrame(
        [{**run, "topic": "b", "on_t": 0.3, "on_t_lo": 0.1, "on_t_hi": 0.5, "on_others": 0.1,
          "on_others_lo": 0.0, "on_others_hi": 0.2, "difference": 0.2, "difference_lo": 0.05,
          "difference_hi": 0.35, "verdict": "holds"}]
    )  # fmt: skip
    table = claims.claims_table(
        dict(
            tscg=tscg,
            neuron_sets=neuron_sets,
            patching=dosed,
            contrasts=contrasts,
            specificity=specific,
        ),
        ts_kept_margin=MARGIN,
    )
    assert verdict("2: the top 30% of G recovers m") == "not shown"
    assert verdict("2: G recovers more of the shif") == "holds"
    row = table[table["claim"].str.startswith("2: S_t of b moves b more")].iloc[0]
    assert (row["measured"], row["control_value"], row["verdict"]) == (0.3, 0.1, "holds")


def test_training_steps_name_each_run_from_its_train_folder(tmp_path):
    import json

    folder = tmp_path / "results" / "m" / "right" / "race" / "ift-freeze_rows-n5" / "train"
    folder.mkdir(parents=True)
    steps = [{"step": 1, "loss": 2.0, "seconds": 1.0}, {"step": 2, "loss": 1.5, "seconds": 2.0}]
    (folder / "train_log.json").write_text(json.dumps({"steps": steps}))
    frame = training.training_steps([folder])
    assert frame[["model", "leaning", "source", "condition"]].drop_duplicates().values.tolist() == [
        ["m", "right", "race", "ift-freeze_rows-n5"]
    ]
    summary = training.training_summary(frame)
    assert summary[["first_loss", "final_loss"]].values.tolist() == [[2.0, 1.5]]


def test_inhibition_effect_compares_each_set_with_the_vanilla_run():
    import torch

    general = _set([(0, 0), (1, 0), (2, 0)])
    inhibited = _set([(0, 0)])
    r_vanilla = torch.full((4, 2), 2.0)
    r_run = r_vanilla.clone()
    r_run[0, 0] = 0.0  # the inhibited neuron did not move at all: inhibition acted fully
    rows = {r["set"]: r for r in inhibitft.inhibition_effect(r_run, r_vanilla, inhibited, general)}
    assert rows["inhibited"]["moved_share"] == 0.0 and rows["inhibited"]["n_neurons"] == 1
    assert rows["G without the inhibited"]["moved_share"] == 1.0
    assert rows["all other neurons"]["n_neurons"] == 8 - 3


def _specificity_inputs(sign):
    """Three topics; base neutral everywhere; FT moves every topic towards `sign` (R or L)."""
    r, n = ("right leaning", "neutral") if sign > 0 else ("left leaning", "neutral")
    topics = ("a", "b", "c")
    ratings = {("m", "base", "-", t): [n] * 4 for t in topics}
    ratings |= {("m", "ft", "s", t): [r] * 4 for t in topics}
    # S_t on its own topic: a full shift on a, half on b, none on c
    own = {"a": [r] * 4, "b": [r, r, n, n], "c": [n] * 4}
    ratings |= {("m", "patch-specific", "s", t): own[t] for t in topics}
    # S_t elsewhere: S_a moves nothing, S_b moves the others fully, S_c a quarter
    elsewhere = {"a": [n] * 4, "b": [r] * 4, "c": [r, n, n, n]}
    crossed = {("m", "s", t, other): elsewhere[t] for t in topics for other in topics if other != t}
    return ratings, crossed


@pytest.mark.parametrize("sign", [1, -1])
def test_specificity_is_the_shift_on_t_minus_the_shift_elsewhere_in_the_fine_tunings_direction(
    sign,
):
    ratings, crossed = _specificity_inputs(sign)
    table = patching.specificity(ratings, crossed, n_boot=200, seed=0, alpha=0.05)
    table = table.set_index("topic")
    assert table["on_t"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert table["on_others"].tolist() == pytest.approx([0.0, 1.0, 0.25])
    assert table["difference"].tolist() == pytest.approx([1.0, -0.5, -0.25])
    # constant answers on a: the CI of its difference has no width; b moves the others more
    assert table.loc["a", ["difference_lo", "difference_hi"]].tolist() == pytest.approx([1, 1])
    assert table.loc["a", "verdict"] == "holds" and table.loc["b", "verdict"] != "holds"
    for value in ("on_t", "on_others", "difference"):
        assert (table[f"{value}_lo"] <= table[value] + 1e-12).all()
        assert (table[value] <= table[f"{value}_hi"] + 1e-12).all()


def test_the_loglik_summary_pools_draws_within_each_training_replicate():
    rows = []
    for condition, ts in (
        ("ft-t0", 0.4),
        ("ft-t1", 0.2),
        ("rnd-x-n5-s0-t0", 0.1),
        ("rnd-x-n5-s1-t0", 0.3),
        ("rnd-x-n5-s0-t1", 0.5),
        ("rnd-x-n5-s1-t1", 0.7),
    ):
        key = dict(model="m", leaning="right", source="a", condition=condition)
        rows += [{**key, "topic": "TS_ll", "dS_ll": ts}, {**key, "topic": "CG_ll", "dS_ll": ts / 2}]
    summary = inhibitft.loglik_summary(pd.DataFrame(rows)).set_index("condition")
    assert sorted(summary.index) == ["ft-t0", "ft-t1", "rnd-x-n5-t0", "rnd-x-n5-t1"]
    assert summary.loc["rnd-x-n5-t0", "TS_ll"] == pytest.approx(0.2)
    assert summary.loc["rnd-x-n5-t1", "TS_ll"] == pytest.approx(0.6)
    assert (summary.loc[["rnd-x-n5-t0", "rnd-x-n5-t1"], "draws"] == 2).all()


def test_a_reason_repeated_inside_joined_cells_is_listed_once():
    """arm_counts joins each test set's own reason with the base model's: the base part used to
    repeat once per test set."""
    base = "base pct: no rated answers"
    joined = common.join_reasons([f"race: x; {base}", f"pct: y; {base}", "", base])
    assert joined == f"race: x; {base}; pct: y"


def test_patching_of_one_leaning_pools_the_random_draws_and_shows_m0_on_each_source_panel():
    left, right = "left leaning", "right leaning"
    ratings = {
        ("m", "base", "-", "a"): [left] * 4,
        ("m", "ft", "t", "a"): [right] * 4,
        ("m", "ft", "u", "a"): [right] * 4,
        ("m", "patch-general", "t", "a"): [right, right, left, left],
        ("m", "patch-random-s0", "t", "a"): [right, left, left, left],
        ("m", "patch-random-s1", "t", "a"): [right, right, right, left],
    }
    out = patching.patching_leaning(ratings, n_boot=50, seed=0, alpha=0.1)
    table = out["table"].set_index(["source", "condition", "test_set"])
    # S from -1 (M0) to 1 (M_s): the general patch at 0 recovers half; the draws at -0.5 and 0.5
    # pool to a mean share of 0.5 with a spread over the draws
    assert table.loc[("t", "patch-general", "a"), "recovered"] == pytest.approx(0.5)
    random = table.loc[("t", "patch-random", "a")]
    assert random["recovered"] == pytest.approx(0.5) and random["draws"] == 2
    assert random["recovered_sd"] == pytest.approx(np.std([0.25, 0.75], ddof=1))
    assert random["recovered_lo"] <= random["recovered"] <= random["recovered_hi"]
    assert table.loc[("t", "patch-random", "all"), "draws"] == 2
    contrast = out["contrasts"].set_index(["treated", "control"])
    assert contrast.loc[("patch-general", "patch-random"), "difference"] == pytest.approx(0.0)
    bars = out["bars"]
    for source in ("t", "u"):
        panel = bars[bars["source"] == source]
        assert "base" in set(panel["condition"]) and "ft" in set(panel["condition"])
        assert (panel["S_lo"] <= panel["S"]).all() and (panel["S"] <= panel["S_hi"]).all()


def test_a_localized_run_gives_a_row_per_set_with_gs_stability_and_a_histogram_per_set():
    run = {"model": "m", "leaning": "right", "source": "t"}
    summary = {"site": "mlp_output", "k": 30, "topics": ["t", "u"]}
    summary["stability"] = {"recovered_share_mean": 0.8, "recovered_share_ci95": [0.7, 0.9]}
    general = _set([(2, 0), (3, 0), (3, 1)])
    specific = {"t": _set([(0, 1)]), "u": _set([])}
    rows, histograms = neurons.neuron_set_rows(run, summary, general, specific)
    assert [row["set"] for row in rows] == ["general", "specific:t", "specific:u"]
    assert rows[0]["size"] == 3 and rows[0]["share_of_all"] == pytest.approx(3 / 8)
    assert (rows[0]["stability_lo"], rows[0]["stability_hi"]) == (0.7, 0.9)
    assert "stability_recovered" not in rows[1] and rows[2]["mean_layer"] is None
    assert [h["set"].iloc[0] for h in histograms] == ["general", "t", "u"]
    assert histograms[0]["count"].tolist() == [0, 0, 1, 2]
    assert (histograms[0]["source"] == "t (right)").all()
    # without a stability bootstrap the columns are there, empty
    rows, _ = neurons.neuron_set_rows(run, {**summary, "stability": None}, general, specific)
    assert rows[0]["stability_recovered"] is None and rows[0]["stability_lo"] is None


def test_the_judge_table_counts_every_label_and_reports_agreement_only_where_measured():
    ratings = ["left leaning", "right leaning", "right leaning", "neutral", "error"]
    agreement = {
        "accuracy": 0.8,
        "kappa": 0.6,
        "n_train": 40,
        "n_test": 10,
        "kappa_by_topic": {"race": 0.5, "science": 0.7},
    }
    classifier = stance.judge_rows("classifier", "tf-idf", ratings, agreement=agreement)
    overall = classifier.iloc[0]
    assert (overall["n_answers"], overall["left"], overall["right"]) == (5, 1, 2)
    assert (overall["neutral"], overall["errors"]) == (1, 1)
    assert overall["kappa"] == 0.6 and overall["why_undefined"] == ""
    per_topic = classifier.set_index("scope")["kappa"]
    assert per_topic["race"] == 0.5 and per_topic["science"] == 0.7
    openai = stance.judge_rows("openai", "gpt-4o-mini", ratings, cached_answers=3)
    assert len(openai) == 1 and openai.iloc[0]["cached_answers"] == 3
    assert np.isnan(openai.iloc[0]["kappa"]) and "not measured" in openai.iloc[0]["why_undefined"]


def test_the_judge_table_reports_the_agreement_on_answers_cut_to_the_generated_length(tmp_path):
    from polneurons.tables.common import write_table

    agreement = {
        "accuracy": 0.85,
        "kappa": 0.75,
        "n_train": 40,
        "n_test": 10,
        "n_no_stance": 0,
        "kappa_by_topic": {"race": 0.5},
    }
    cut = {"accuracy": 0.77, "kappa": 0.63, "n_test": 10, "n_no_stance": 2, "max_tokens": 32}
    table = stance.judge_rows(
        "classifier", "tf-idf", ["neutral"], agreement=agreement, truncated={"smollm2": cut}
    )
    assert table["answers"].tolist() == ["whole", "first 32 tokens (smollm2)", "whole"]
    whole, short = table.iloc[0], table.iloc[1]
    assert (whole["kappa"], whole["no_stance"]) == (0.75, 0)
    assert (short["scope"], short["accuracy"], short["kappa"]) == ("all", 0.77, 0.63)
    assert (short["n_test"], short["no_stance"]) == (10, 2)
    assert np.isnan(short["n_answers"]) and short["why_undefined"] == ""
    assert table.iloc[2]["scope"] == "race" and table.iloc[2]["kappa"] == 0.5
    write_table(table, tmp_path / "j.csv", tmp_path / "j.md", explain=("accuracy", "kappa"))
    assert "first 32 tokens (smollm2)" in (tmp_path / "j.md").read_text()
    # one row per model (each cut with its own tokenizer); none for a judge not measured
    two = stance.judge_rows(
        "classifier", "tf-idf", [], agreement=agreement, truncated={"a": cut, "b": cut}
    )
    assert two["answers"].str.startswith("first").sum() == 2
    assert len(stance.judge_rows("hf", "qwen", [], truncated=None)) == 1


def test_every_claim_reads_only_known_tables_and_a_claim_missing_a_table_is_left_out():
    assert {entry.name for entry in claims.CLAIMS} >= {"cross_topic_shift", "inhibitft_cuts_cg"}
    for entry in claims.CLAIMS:
        assert entry.reads and set(entry.reads) <= set(claims.TABLE_FILES), entry.name
    with pytest.raises(ValueError):
        claims.claim("no_such_table")
    tscg = pd.DataFrame(
        [dict(model="m", leaning="right", source="a", TS=1.0, CG=0.3, CG_lo=0.1, CG_hi=0.5)]
    )
    inhibitft = pd.DataFrame(columns=["model", "leaning", "source", "condition"])
    table = claims.claims_table({"tscg": tscg, "inhibitft": inhibitft}, ts_kept_margin=MARGIN)
    assert table["claim"].tolist() == ["1: fine-tuning on one topic shifts the others (CG)"]


def test_a_pooled_share_over_a_test_set_with_undefined_s_is_undefined_with_its_reason():
    """One test set of M_s has no rated answer (S undefined): its share is undefined, and so is
    the pooled one (not the sum of the other sets), with no CI, in the contrasts too, and the
    claims say `undefined` and why instead of `not shown`."""
    E, L, R = "error", "left leaning", "right leaning"
    ratings = {}
    for test_set, ft in (("a", [E] * 4), ("b", [R, R, L, L])):
        ratings[("m", "base", "-", test_set)] = [L] * 4
        ratings[("m", "ft", "t", test_set)] = ft
        ratings[("m", "patch-general", "t", test_set)] = [R, L, L, L]
        ratings[("m", "patch-random-s0", "t", test_set)] = [R, R, R, L]
    out = patching.patching_leaning(ratings, n_boot=50, seed=0, alpha=0.1)
    table = out["table"].set_index(["condition", "test_set"])
    assert np.isnan(table.loc[("patch-general", "a"), "recovered"])
    assert not np.isnan(table.loc[("patch-general", "b"), "recovered"])  # a defined set stays
    pooled = table.loc[("patch-general", "all")]
    assert np.isnan(pooled["recovered"]) and np.isnan(pooled["recovered_lo"])
    assert pooled["undefined_sets"] == "a"
    contrast = out["contrasts"].iloc[0]
    assert np.isnan(contrast["difference"]) and np.isnan(contrast["difference_lo"])

    counts = pd.DataFrame(
        [
            dict(leaning="right", model="m", condition=c, source=src, test_set=t, n=4,
                 n_rated=0 if (c, t) == ("ft", "a") else 4,
                 why_undefined="no rated answers" if (c, t) == ("ft", "a") else "")
            for c, src in (("base", "-"), ("ft", "t"), ("patch-general", "t"),
                           ("patch-random", "t"))
            for t in ("a", "b", "all")
        ]
    )  # fmt: skip
    shown = patching.with_patching_counts(out["table"].assign(leaning="right"), counts)
    pooled_row = shown[(shown["condition"] == "patch-general") & (shown["test_set"] == "all")]
    assert pooled_row["why_undefined"].item() == "pooled over test sets, S undefined in a"
    contrasts = out["contrasts"].assign(leaning="right")
    tscg = pd.DataFrame(
        [dict(model="m", leaning="right", source="t", TS=1.0, CG=0.3, CG_lo=0.1, CG_hi=0.5)]
    )
    claims_table = claims.claims_table(
        dict(tscg=tscg, patching=shown, contrasts=contrasts), ts_kept_margin=MARGIN
    )
    row = claims_table[claims_table["claim"].str.startswith("2: G recovers more")].iloc[0]
    assert row["verdict"] == "undefined"
    assert row["undefined_because"] == "pooled over test sets, S undefined in a"
    defined = claims_table[claims_table["verdict"] != "undefined"]
    assert (defined["undefined_because"] == "").all()


@pytest.mark.parametrize(
    ("ts", "ci", "verdict"),
    [
        (0.5, (0.05, 0.3), "holds"),  # a right fine-tune spills more than the null one
        (0.5, (-0.1, 0.3), "not shown"),
        (-0.5, (0.05, 0.3), "reversed"),  # a left fine-tune: CG above CG_null goes the wrong way
    ],
)
def test_claim_one_against_the_null_fine_tune_can_hold_not_show_and_reverse(ts, ci, verdict):
    from polneurons.tables.stance import VERSUS_NULL_COLUMNS

    row = dict.fromkeys(VERSUS_NULL_COLUMNS, 0.1) | dict(
        model="m", leaning="right", source="race", treated="ft", control="null", TS_treated=ts,
        CG=0.15, CG_lo=ci[0], CG_hi=ci[1],
    )  # fmt: skip
    table = claims.claims_table({"tscg_null": pd.DataFrame([row])}, ts_kept_margin=MARGIN)
    assert table["verdict"].item() == verdict and table["control"].item() == "null"
    assert "without politics" in table["claim"].item()


@pytest.mark.parametrize(
    ("ts", "ci", "verdict"),
    [
        (0.5, (0.05, 0.3), "holds"),
        (0.5, (-0.1, 0.3), "not shown"),
        (-0.5, (0.05, 0.3), "reversed"),
    ],
)
def test_claim_one_against_the_null_fine_tune_without_a_judge_can_hold_not_show_and_reverse(
    ts, ci, verdict
):
    row = dict.fromkeys(stance.LOGLIK_VERSUS_COLUMNS, 0.1) | dict(
        model="m", leaning="right", source="race", treated="ft-t1", control="null",
        TS_ll_treated=ts, CG_ll=0.15, CG_ll_lo=ci[0], CG_ll_hi=ci[1],
    )  # fmt: skip
    table = claims.claims_table({"tscg_ll_null": pd.DataFrame([row])}, ts_kept_margin=MARGIN)
    assert table["verdict"].item() == verdict and table["control"].item() == "null"
    assert table["readout"].item() == claims.TEACHER_FORCED_LL
    assert table["claim"].item().endswith("without politics (ft-t1)")


def _scored_pairs(rng, conditions, topics=("race", "science", "immigration"), n_pairs=6):
    """Per-pair log-likelihood stances of these conditions, as collect_loglik returns them."""
    return pd.DataFrame(
        [dict(model="m", leaning="right", source="race", condition=c, topic=t, pair=i,
              value=rng.normal())
         for c in conditions for t in topics for i in range(n_pairs)]
    )  # fmt: skip


def test_claim_one_without_a_judge_is_the_paired_difference_of_each_pairs_scores():
    rng = np.random.default_rng(0)
    topics = ["race", "science", "immigration"]
    frame = _scored_pairs(rng, ["base", "ft-t0", "ft-t1", "null-t0", "null-t1"])
    shift = stance.loglik_shift(frame, topics, n_boot=200, seed=0, alpha=0.05)
    table = stance.loglik_versus(frame, shift, topics, [("ft", "null")], 200, 0, 0.05)
    # each replicate against the control trained with the same seed
    assert table[["treated", "control"]].values.tolist() == [
        ["ft-t0", "null-t0"],
        ["ft-t1", "null-t1"],
    ]
    values = frame.set_index(["condition", "topic", "pair"])["value"]
    for _, row in table.iterrows():
        diff = values[row["treated"]] - values[row["control"]]
        assert row["TS_ll"] == pytest.approx(diff["race"].mean())
        assert row["CG_ll"] == pytest.approx(np.mean([diff[t].mean() for t in topics[1:]]))
        assert row["CG_ll_lo"] < row["CG_ll"] < row["CG_ll_hi"]
        # the base model cancels: each arm's CG_ll against it differs by the same amount
        assert row["CG_ll_treated"] - row["CG_ll_control"] == pytest.approx(row["CG_ll"])
    unreplicated = frame[~frame["condition"].isin(["null-t1"])].replace({"null-t0": "null"})
    table = stance.loglik_versus(unreplicated, shift, topics, [("ft", "null")], 50, 0, 0.05)
    assert set(table["control"]) == {"null"} and len(table) == 2
    assert stance.loglik_versus(frame[frame["condition"] != "null-t0"].iloc[:0], shift, topics,
                                [("ft", "null")], 50, 0, 0.05).empty  # fmt: skip


def test_the_depth_claim_against_g_null_can_hold_fail_and_not_show():
    rows = [
        dict(model="m", leaning="right", source=s, n_layers=30, layer_q25_G=g, layer_q25_G_null=n)
        for s, g, n in (("race", 20, 5), ("science", 5, 5), ("immigration", 20, 20))
    ]
    table = claims.claims_table({"null_overlap": pd.DataFrame(rows)}, ts_kept_margin=MARGIN)
    assert table.set_index("source")["verdict"].to_dict() == {
        "race": "holds",
        "science": "fails",
        "immigration": "not shown",
    }
    assert (table["control"] == "G_null").all()


def test_versus_null_puts_each_arms_own_ts_and_cg_beside_the_paired_difference():
    run = dict(model="m", leaning="right", source="race")
    tscg = pd.DataFrame(
        [dict(run, condition="ft", TS=0.8, CG=0.4, CG_lo=0.2, CG_hi=0.6),
         dict(run, condition="null", TS=0.1, CG=0.3, CG_lo=0.1, CG_hi=0.5)]
    )  # fmt: skip
    versus = pd.DataFrame(
        [dict(model="m", source="race", treated="ft", control="null", TS=0.7, TS_lo=0.5,
              TS_hi=0.9, CG=0.1, CG_lo=-0.1, CG_hi=0.3, leaning="right")]
    )  # fmt: skip
    table = stance.versus_null([versus], tscg)
    row = table.iloc[0]
    assert list(table.columns) == stance.VERSUS_NULL_COLUMNS
    assert (row["TS_treated"], row["CG_treated"], row["CG_control"]) == (0.8, 0.4, 0.3)
    assert (row["CG_treated_lo"], row["CG_treated_hi"], row["CG"]) == (0.2, 0.6, 0.1)
    assert stance.versus_null([], tscg).empty


def test_a_table_is_read_back_as_written_the_null_run_kind_included(tmp_path):
    frame = pd.DataFrame({"condition": ["ft", "null"], "CG": [0.3, float("nan")]})
    common.write_table(frame, tmp_path / "t.csv")
    back = common.read_table(tmp_path / "t.csv")
    assert back["condition"].tolist() == ["ft", "null"] and back["CG"].isna().tolist() == [
        False,
        True,
    ]
    assert pd.read_csv(tmp_path / "t.csv")["condition"].isna().any()  # pandas' default would not


def test_the_stance_heatmap_draws_a_row_per_leaning_and_source(tmp_path, monkeypatch):
    from polneurons import plots

    delta = pd.DataFrame(
        [
            {"model": "m", "leaning": lean, "source": "a", "test_set": t, "dS": sign * 0.3}
            for lean, sign in (("left", -1), ("right", 1))
            for t in ("a", "b")
        ]
    )
    grids = []
    monkeypatch.setattr(
        "seaborn.heatmap", lambda grid, **kw: grids.append(grid) or kw["ax"]
    )  # what would be drawn
    plots.stance_heatmap(delta, ["a", "b"], str(tmp_path / "h.png"), str(tmp_path / "h.pdf"))
    assert list(grids[0].index) == ["left: a", "right: a"]
    assert grids[0].loc["left: a", "b"] == pytest.approx(-0.3)
    one = delta[delta["leaning"] == "right"]
    plots.stance_heatmap(one, ["a", "b"], str(tmp_path / "o.png"), str(tmp_path / "o.pdf"))
    assert list(grids[1].index) == ["a"]  # one leaning: the source alone, as before


def _loglik_frame(cg_by_leaning: dict, ts: float = 0.5, pairs: int = 12, seed: int = 0):
    """collect_loglik's rows: the base model and one vanilla fine-tune per leaning, its S_ll
    M0's plus ts on the source topic and the leaning's cg on the others, with small noise."""
    rng = np.random.default_rng(seed)
    topics = ("a", "b", "c")
    base = {(t, i): rng.normal(0, 1) for t in topics for i in range(pairs)}
    rows = [
        dict(model="m", leaning=None, source=None, condition="base", topic=t, pair=i, value=v)
        for (t, i), v in base.items()
    ]
    for leaning, cg in cg_by_leaning.items():
        sign = -1 if leaning == "left" else 1
        rows += [
            dict(model="m", leaning=leaning, source="a", condition="ft", topic=t, pair=i,
                 value=v + (sign * ts if t == "a" else cg) + rng.normal(0, 0.05))
            for (t, i), v in base.items()
        ]  # fmt: skip
    return pd.DataFrame(rows), topics


def test_the_judge_free_ts_and_cg_have_cis_from_a_bootstrap_over_pairs():
    frame, topics = _loglik_frame({"right": 0.3})
    table = stance.loglik_shift(frame, topics, n_boot=300, seed=0, alpha=0.05)
    rows = table[table["leaning"] == "right"].set_index("topic")
    # CG_ll: the mean over the other topics of each topic's mean shift
    assert rows.loc["CG_ll", "dS_ll"] == pytest.approx(rows.loc[["b", "c"], "dS_ll"].mean())
    for name, value in (("TS_ll", 0.5), ("CG_ll", 0.3)):
        point, lo, hi = rows.loc[name, ["dS_ll", "dS_ll_lo", "dS_ll_hi"]]
        assert lo < point < hi and hi - lo < 0.2 and point == pytest.approx(value, abs=0.1)


@pytest.mark.parametrize(
    "cg, verdicts",
    [
        ({"left": -0.3, "right": 0.3}, {"left": "holds", "right": "holds", "both": "holds"}),
        ({"left": 0.3, "right": 0.3}, {"left": "reversed", "right": "holds", "both": "not shown"}),
        (
            {"left": 0.0, "right": -0.3},
            {"left": "not shown", "right": "reversed", "both": "not shown"},
        ),
    ],
)
def test_claim_1_is_read_without_a_judge_in_each_leaning_and_across_them(cg, verdicts):
    frame, topics = _loglik_frame(cg)
    loglik = stance.loglik_shift(frame, topics, n_boot=300, seed=0, alpha=0.05)
    table = claims.claims_table({"tscg_ll": loglik}, ts_kept_margin=MARGIN)
    assert (table["readout"] == "teacher-forced").all()
    shift = table[table["claim"].str.startswith("1: fine-tuning on one topic")]
    assert dict(zip(shift["leaning"], shift["verdict"], strict=True)) == {
        k: v for k, v in verdicts.items() if k != "both"
    }
    both = table[table["claim"].str.contains("follows the fine-tune's leaning")]
    assert both["verdict"].item() == verdicts["both"] and "CG_ll" in both["rule"].item()


@pytest.mark.parametrize(
    ("specific", "control", "verdict"),
    [(3, 0, "holds"), (2, 2, "not shown"), (0, 3, "reversed")],
)
def test_the_judges_s_t_is_compared_with_as_many_random_neurons_outside_n_t_on_its_topic(
    specific, control, verdict
):
    """Of 12 answers per topic, `specific` (S_t patched) and `control` (each random draw of
    S_t's size outside N_t) of every 4 turn right; the claim compares the pooled recovered
    shares, paired, and can hold, not show and reverse."""
    L, R = "left leaning", "right leaning"

    def answers(right):
        return ([R] * right + [L] * (4 - right)) * 3

    ratings = {}
    for topic in ("a", "b"):
        ratings[("m", "base", "-", topic)] = [L] * 12
        ratings[("m", "ft", "t", topic)] = [R] * 12
        ratings[("m", "patch-specific", "t", topic)] = answers(specific)
        for draw in (0, 1):
            ratings[("m", f"patch-specific-random-s{draw}", "t", topic)] = answers(control)
    out = patching.patching_leaning(ratings, n_boot=200, seed=0, alpha=0.05)
    contrasts = out["contrasts"].assign(leaning="right")
    pair = contrasts[contrasts["treated"] == "patch-specific"]
    assert pair["control"].tolist() == ["patch-specific-random"]
    table = claims.claims_table(
        dict(patching=out["table"].assign(leaning="right"), contrasts=contrasts),
        ts_kept_margin=MARGIN,
    )
    row = table[table["control"] == "patch-specific-random"].iloc[0]
    control_text = "as many random neurons outside N_t"
    assert row["claim"] == f"2: S_t on its own topic recovers more of the shift than {control_text}"
    assert row["difference"] == pytest.approx((specific - control) / 4)
    assert row["verdict"] == verdict and "one random draw" not in row["rule"]
