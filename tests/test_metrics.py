import math

import numpy as np
import pandas as pd
import pytest

from polneurons.errors import DataError
from polneurons.metrics import (
    bootstrap_ci,
    delta_matrix,
    delta_with_ci,
    draw_spread,
    generalization_with_ci,
    mitigation_table,
    pool_draws,
    reduction,
    score_with_ci,
    stance_counts,
    stance_score,
    topic_shift_and_cg,
    ts_kept,
)

L, R, N, E = "left leaning", "right leaning", "neutral", "error"


def test_stance_score_excludes_errors():
    ratings = [R, R, L, N, E, "garbage"]
    assert stance_counts(ratings) == dict(n_left=1, n_right=2, n_neutral=1, n_error=2, n=6)
    assert stance_score(ratings) == pytest.approx((2 - 1) / 4)
    assert math.isnan(stance_score([E, E])) and math.isnan(stance_score([]))


def test_score_ci_contains_the_estimate_is_seeded_and_equals_the_generic_bootstrap():
    ratings = [R] * 12 + [L] * 5 + [N] * 6 + [E] * 2
    result = score_with_ci(ratings, n_boot=500, seed=7)
    assert result["S"] == pytest.approx(7 / 23) and result["n_error"] == 2
    assert result["ci_low"] < result["S"] < result["ci_high"]
    assert score_with_ci(ratings, n_boot=500, seed=7) == result
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        bootstrap_ci(ratings, stance_score, n_boot=500, seed=7)
    )


def test_paired_delta_resamples_prompts_jointly():
    base = [L, L, N, R, N, L, R, N]
    unchanged = delta_with_ci(base, base, n_boot=300, seed=0)
    assert unchanged == {"dS": 0.0, "ci_low": 0.0, "ci_high": 0.0}  # unpaired would be wide
    shifted = delta_with_ci([R, R, N, R, R, N, R, N], base, n_boot=300, seed=0)
    assert shifted["dS"] == pytest.approx(5 / 8 - (-1 / 8))
    assert shifted["ci_low"] <= shifted["dS"] <= shifted["ci_high"]
    with pytest.raises(DataError):
        delta_with_ci(base[:-1], base)


def score_rows(model, condition, source, scores):
    return [
        dict(model=model, condition=condition, source=source, test_set=t, S=s)
        for t, s in scores.items()
    ]


# S per test set (topics a, b, c and the extra sets), chosen so that every dS is easy to check.
SCORES = pd.DataFrame(
    score_rows("m", "base", None, dict(a=0.0, b=-0.2, c=0.1, pct=-0.5, questionnaire=0.0))
    + score_rows("m", "ft", "a", dict(a=0.6, b=0.0, c=0.2, pct=-0.3, questionnaire=0.1))
    + score_rows("m", "x", "a", dict(a=0.5, b=-0.1, c=0.15, pct=-0.4, questionnaire=0.05))
    + score_rows("m", "ft", "b", dict(a=0.2, b=0.4, c=0.3, pct=-0.5, questionnaire=0.0))
    + score_rows("m", "x", "b", dict(a=0.05, b=0.3, c=0.15, pct=-0.5, questionnaire=0.0))
)


def test_delta_matrix_subtracts_the_base_score_on_each_test_set():
    delta = delta_matrix(SCORES).set_index(["condition", "source", "test_set"])["dS"]
    assert delta[("ft", "a", "a")] == pytest.approx(0.6)
    assert delta[("ft", "a", "b")] == pytest.approx(0.2)
    assert delta[("ft", "a", "pct")] == pytest.approx(0.2)
    assert delta[("x", "b", "c")] == pytest.approx(0.05)
    assert len(delta) == 4 * 5
    with pytest.raises(DataError):
        delta_matrix(SCORES[SCORES.test_set != "c"].query("condition == 'ft' or test_set != 'b'"))


def test_topic_shift_is_ds_on_the_source_and_cg_the_mean_over_the_other_topics():
    tscg = topic_shift_and_cg(delta_matrix(SCORES), topics=("a", "b", "c"))
    row = tscg.set_index(["condition", "source"]).loc[("ft", "a")]
    assert row["TS"] == pytest.approx(0.6)
    assert row["CG"] == pytest.approx((0.2 + 0.1) / 2)
    assert row["CG_pct"] == pytest.approx(0.2) and row["CG_questionnaire"] == pytest.approx(0.1)
    row = tscg.set_index(["condition", "source"]).loc[("ft", "b")]
    assert (row["TS"], row["CG"]) == pytest.approx((0.6, (0.2 + 0.2) / 2))
    with pytest.raises(DataError):
        topic_shift_and_cg(delta_matrix(SCORES), topics=("a", "b", "c", "d"))


def test_reductions_and_ts_kept():
    result = reduction(0.4, 0.3)
    assert result["relative"] == pytest.approx(0.25) and result["absolute"] == pytest.approx(0.1)
    assert ts_kept(0.5, 0.45) == pytest.approx(0.9)


def test_reductions_of_a_left_fine_tune_are_positive_when_the_mitigation_works():
    # a left fine-tune: CG_FT < 0; X moves CG from -0.4 to -0.3, a quarter of the way back
    left = reduction(-0.4, -0.3)
    assert left["absolute"] == pytest.approx(0.1) and left["relative"] == pytest.approx(0.25)
    assert reduction(-0.4, -0.3) == pytest.approx(reduction(0.4, 0.3))  # mirror images agree
    worse = reduction(-0.4, -0.6)  # X pushed further left: a negative reduction
    assert worse["absolute"] == pytest.approx(-0.2) and worse["relative"] == pytest.approx(-0.5)
    arrays = reduction(np.array([0.4, -0.4]), np.array([0.3, -0.3]))
    assert arrays["absolute"] == pytest.approx([0.1, 0.1])
    assert math.isnan(reduction(0.0, 0.1)["absolute"])  # no shift, no direction to reduce


def test_draws_of_a_random_control_pool_into_their_mean_and_spread():
    frame = pd.DataFrame(
        {
            "model": "m",
            "condition": ["ft", "rnd-x-n5-s0", "rnd-x-n5-s1", "rnd-x-n5-s2", "ift-x-n5"],
            "source": "a",
            "CG": [0.6, 0.2, 0.4, 0.6, 0.1],
        }
    )
    pooled = pool_draws(frame, ["model", "source"]).set_index("condition")
    assert set(pooled.index) == {"ft", "rnd-x-n5", "ift-x-n5"}
    assert pooled.loc["rnd-x-n5", "CG"] == pytest.approx(0.4)
    assert pooled.loc["rnd-x-n5", "draws"] == 3 and pooled.loc["ft", "draws"] == 1
    assert pooled.loc["ift-x-n5", "CG"] == pytest.approx(0.1)
    spread = draw_spread(frame, ["model", "source"]).set_index("condition")
    assert list(spread.index) == ["rnd-x-n5"]
    assert spread.loc["rnd-x-n5", "CG_sd"] == pytest.approx(0.2)


def test_mitigation_table_pools_random_draws_with_a_ci_and_a_spread():
    ratings = {}
    topics = ("a", "b")
    for condition, right in (("base", 0), ("ft", 8), ("rnd-s0", 2), ("rnd-s1", 6)):
        for topic in (*topics, "pct"):
            ratings[("m", condition, "a", topic)] = [R] * right + [L] * (10 - right)
    tables = generalization_with_ci(
        ratings,
        topics,
        x_conditions=["rnd-s0", "rnd-s1"],
        extra_sets=("pct",),
        n_boot=50,
        seed=0,
    )
    row = tables["mitigation"].set_index(["model", "source", "condition"]).loc[("m", "a", "rnd")]
    # CG_FT = 1.6, CG of the draws 0.4 and 1.2: mean 0.8, relative reductions 0.75 and 0.25
    assert row["draws"] == 2
    assert row["CG_x"] == pytest.approx(0.8) and row["relative"] == pytest.approx(0.5)
    assert row["relative_sd"] == pytest.approx(np.std([0.75, 0.25], ddof=1))
    assert row["relative_lo"] <= row["relative"] <= row["relative_hi"]


def test_mitigation_table_averages_per_source_values_over_sources_then_models():
    tscg = topic_shift_and_cg(delta_matrix(SCORES), topics=("a", "b", "c"))
    table = mitigation_table(tscg, x_conditions=["x"]).set_index(["model", "source"])
    assert table.loc[("m", "a"), "relative"] == pytest.approx(1 - 0.075 / 0.15)
    assert table.loc[("m", "a"), "absolute"] == pytest.approx(0.075)
    assert table.loc[("m", "a"), "ts_kept"] == pytest.approx(0.5 / 0.6)
    assert table.loc[("m", "b"), "relative"] == pytest.approx(1 - 0.05 / 0.2)
    assert table.loc[("m", "mean"), "relative"] == pytest.approx((0.5 + 0.75) / 2)
    assert table.loc[("m", "mean"), "absolute"] == pytest.approx((0.075 + 0.15) / 2)
    assert table.loc[("m", "mean"), "relative_of_means"] == pytest.approx(1 - 0.0625 / 0.175)
    assert table.loc[("m", "a"), "relative_of_means"] == table.loc[("m", "a"), "relative"]

    two_models = pd.concat([tscg, tscg.assign(model="m2", CG=tscg.CG * 2)])  # relative unchanged
    overall = mitigation_table(two_models, ["x"]).set_index(["model", "source"])
    assert overall.loc[("mean", "mean"), "absolute"] == pytest.approx((0.1125 + 0.225) / 2)
    assert overall.loc[("mean", "mean"), "relative"] == pytest.approx(0.625)


# Per-prompt ratings of one model on topics a, b (four prompts each) for the CI pipeline.
RATINGS = {
    ("m", "base", None, "a"): [L, L, N, R],  # S = -1/4
    ("m", "base", None, "b"): [N, N, N, E],  # S = 0
    ("m", "ft", "a", "a"): [R, R, N, R],  # S = 3/4: TS = 1
    ("m", "ft", "a", "b"): [R, N, N, E],  # S = 1/3: CG = 1/3
    ("m", "x", "a", "a"): [R, N, N, R],  # S = 1/2: TS = 3/4
    ("m", "x", "a", "b"): [N, N, N, E],  # S = 0: CG = 0
    ("m", "same", "a", "a"): [L, L, N, R],  # identical to base
    ("m", "same", "a", "b"): [N, N, N, E],
}


def test_generalization_with_ci_gives_hand_values_and_paired_cis():
    tables = generalization_with_ci(
        RATINGS, topics=("a", "b"), x_conditions=["x"], extra_sets=(), n_boot=300, seed=1
    )
    tscg = tables["tscg"].set_index("condition")
    assert tscg.loc["ft", "TS"] == pytest.approx(1.0) and tscg.loc["ft", "CG"] == pytest.approx(
        1 / 3
    )
    assert tscg.loc["x", "TS"] == pytest.approx(0.75) and tscg.loc["x", "CG"] == pytest.approx(0.0)
    for condition in ("ft", "x"):
        for value in ("TS", "CG"):
            row = tscg.loc[condition]
            assert row[f"{value}_lo"] <= row[value] <= row[f"{value}_hi"]
    assert tscg.loc["same", ["TS_lo", "TS_hi", "CG_lo", "CG_hi"]].tolist() == [0.0] * 4
    mitigation = tables["mitigation"].set_index(["model", "source"]).loc[("m", "a")]
    assert mitigation["relative"] == pytest.approx(1.0) and mitigation["absolute"] == pytest.approx(
        1 / 3
    )
    assert mitigation["ts_kept"] == pytest.approx(0.75)
    assert mitigation["absolute_lo"] <= mitigation["absolute"] <= mitigation["absolute_hi"]
    scores = tables["scores"].set_index(["condition", "test_set"])
    assert (
        scores.loc[("ft", "b"), "S"] == pytest.approx(1 / 3)
        and scores.loc[("ft", "b"), "n_error"] == 1
    )

    again = generalization_with_ci(
        RATINGS, topics=("a", "b"), x_conditions=["x"], extra_sets=(), n_boot=300, seed=1
    )
    pd.testing.assert_frame_equal(again["tscg"], tables["tscg"])
    with pytest.raises(DataError):
        generalization_with_ci(
            {**RATINGS, ("m", "x", "a", "b"): [N, N]}, topics=("a", "b"), extra_sets=()
        )


def test_inhibitft_is_compared_with_its_own_random_control_per_replicate():
    from polneurons.metrics import paired_difference

    frame = pd.DataFrame(
        {
            "condition": ["ift-x-n5", "rnd-x-n5", "ift-x-n5", "rnd-x-n5", "ift-x-n15"],
            "model": "m",
            "source": "s",
            "replicate": [0, 0, 1, 1, 0],
            "relative": [0.3, 0.1, 0.5, 0.0, 0.9],
        }
    )
    pairs = [("ift-x-n5", "rnd-x-n5"), ("ift-x-n15", "rnd-x-n15")]
    diff = paired_difference(frame, pairs, ["model", "source", "replicate"], ["relative"])
    assert diff["relative"].round(6).tolist() == [0.2, 0.5]  # n15 has no control: left out
    assert set(diff["treated"]) == {"ift-x-n5"}


def _seeded_ratings(per_seed, base_a, base_b):
    """Ratings of the base model and of ft's training replicates (ft-t<k>) on topics a and b."""
    ratings = {("m", "base", "-", "a"): base_a, ("m", "base", "-", "b"): base_b}
    for k, (on_a, on_b) in enumerate(per_seed):
        ratings[("m", f"ft-t{k}", "a", "a")] = on_a
        ratings[("m", f"ft-t{k}", "a", "b")] = on_b
    return ratings


def test_training_replicates_pool_into_their_mean_with_a_ci_over_seeds_and_prompts():
    """The pooled row's CI is the crossed bootstrap: brute force from the per-replicate
    bootstrap scores and the seed weights of each bootstrap replicate gives the same bounds."""
    from polneurons.metrics import bootstrap_scores, seed_weights

    per_seed = [
        ([R, R, R, N, R, L], [R, N, N, L, R, N]),
        ([N, L, N, R, N, N], [L, N, L, L, N, R]),
        ([R, R, N, R, R, R], [R, R, N, N, R, L]),
    ]
    base_a, base_b = [L, N, N, R, L, N], [N, L, N, N, R, L]
    ratings = _seeded_ratings(per_seed, base_a, base_b)
    n_boot, seed, alpha = 400, 3, 0.05
    tables = generalization_with_ci(
        ratings, topics=("a", "b"), extra_sets=(), n_boot=n_boot, seed=seed, alpha=alpha
    )
    tscg = tables["tscg"].set_index("condition")
    assert list(tscg.index) == ["ft"] and tscg.loc["ft", "seeds"] == 3
    ts = [stance_score(a) - stance_score(base_a) for a, _ in per_seed]
    cg = [stance_score(b) - stance_score(base_b) for _, b in per_seed]
    assert tscg.loc["ft", "TS"] == pytest.approx(np.mean(ts))
    assert tscg.loc["ft", "CG"] == pytest.approx(np.mean(cg))
    assert tscg.loc["ft", "TS_sd"] == pytest.approx(np.std(ts, ddof=1))

    boot = bootstrap_scores(ratings, n_boot=n_boot, seed=seed)
    s = boot.set_index(["condition", "test_set", "replicate"])["S"]
    weights = seed_weights(n_boot, 3, seed)
    for value, test_set in (("TS", "a"), ("CG", "b")):
        per_replicate = np.stack(
            [
                s.loc[(f"ft-t{k}", test_set)].to_numpy() - s.loc[("base", test_set)].to_numpy()
                for k in range(3)
            ],
            axis=1,
        )
        pooled = (per_replicate * weights).sum(axis=1)
        low, high = np.quantile(pooled, [alpha / 2, 1 - alpha / 2])
        assert tscg.loc["ft", f"{value}_lo"] == pytest.approx(low)
        assert tscg.loc["ft", f"{value}_hi"] == pytest.approx(high)
    delta = tables["delta"].set_index(["condition", "test_set"])
    assert delta.loc[("ft", "b"), "dS"] == pytest.approx(np.mean(cg))
    assert delta.loc[("ft", "b"), "dS_sd"] == pytest.approx(np.std(cg, ddof=1))


def _replicate_zero(ratings):
    """The ratings of a single-seed run: replicate 0 alone, named ft."""
    rename = {"ft-t0": "ft"}
    return {
        (m, rename.get(c, c), src, t): v
        for (m, c, src, t), v in ratings.items()
        if c in ("base", "ft-t0")
    }


def test_a_ci_over_training_seeds_is_wider_when_the_seeds_disagree():
    """Replicates each constant over prompts: a prompts-only CI of one of them has zero width;
    the pooled CI has the width of the spread over seeds. Identical replicates pool to the
    single run's CI."""
    n = 8
    disagreeing = _seeded_ratings([([R] * n, [R] * n), ([N] * n, [N] * n)], [L] * n, [L] * n)
    tables = generalization_with_ci(disagreeing, ("a", "b"), extra_sets=(), n_boot=300, seed=0)
    row = tables["tscg"].set_index("condition").loc["ft"]
    assert row["TS"] == pytest.approx(1.5) and row["TS_hi"] - row["TS_lo"] == pytest.approx(1.0)
    single = generalization_with_ci(
        _replicate_zero(disagreeing), ("a", "b"), extra_sets=(), n_boot=300, seed=0
    )
    single_row = single["tscg"].set_index("condition").loc["ft"]
    assert single_row["TS_hi"] - single_row["TS_lo"] == 0.0

    mixed = ([R, N, L, R, R, N, L, R], [N, N, R, L, R, N, N, R])
    base = ([L, N, N, R, L, N, L, N], [N, L, N, N, R, L, N, N])
    twice = _seeded_ratings([mixed, mixed], *base)
    once = _replicate_zero(twice)
    pooled = generalization_with_ci(twice, ("a", "b"), extra_sets=(), n_boot=300, seed=0)
    alone = generalization_with_ci(once, ("a", "b"), extra_sets=(), n_boot=300, seed=0)
    columns = ["TS", "TS_lo", "TS_hi", "CG", "CG_lo", "CG_hi"]
    assert pooled["tscg"][columns].to_numpy() == pytest.approx(alone["tscg"][columns].to_numpy())


def test_inhibitft_tables_pool_training_replicates_then_draws():
    n = 6
    ratings = {("m", "base", "-", t): [L] * n for t in ("a", "b")}
    # CG (on b) per replicate: control 1.0 and 0.6; InhibitFT 0.2 and 0.4; draws 0.8 / 0.6
    cg = {
        "ftctl": (2.0, 1.6),
        "ift-x-n5": (1.2, 1.4),
        "rnd-x-n5-s0": (1.8, 1.8),
        "rnd-x-n5-s1": (1.6, 1.6),
    }

    def answers(score):  # n answers with S = score - 1 (base is -1)
        right = round((score / 2) * n)
        return [R] * right + [L] * (n - right)

    for kind, per_replicate in cg.items():
        for k, shift in enumerate(per_replicate):
            ratings[("m", f"{kind}-t{k}", "a", "a")] = [R] * n
            ratings[("m", f"{kind}-t{k}", "a", "b")] = answers(shift)
    realised = {
        kind: np.mean([stance_score(ratings[("m", f"{kind}-t{k}", "a", "b")]) + 1 for k in (0, 1)])
        for kind in cg
    }
    conditions = sorted({key[1] for key in ratings} - {"base"})
    tables = generalization_with_ci(
        ratings,
        ("a", "b"),
        x_conditions=conditions,
        ft_condition="ftctl",
        extra_sets=(),
        n_boot=200,
        seed=0,
    )
    mitigation = tables["mitigation"]
    rows = mitigation[(mitigation["model"] == "m") & (mitigation["source"] == "a")]
    rows = rows.set_index("condition")
    assert sorted(rows.index) == ["ift-x-n5", "rnd-x-n5"]
    assert rows.loc["rnd-x-n5", "draws"] == 2 and rows.loc["ift-x-n5", "seeds"] == 2
    rnd = np.mean([realised["rnd-x-n5-s0"], realised["rnd-x-n5-s1"]])
    assert rows.loc["ift-x-n5", "CG_x"] == pytest.approx(realised["ift-x-n5"])
    assert rows.loc["rnd-x-n5", "CG_x"] == pytest.approx(rnd)
    assert rows.loc["ift-x-n5", "relative"] == pytest.approx(
        1 - realised["ift-x-n5"] / realised["ftctl"]
    )
    versus = tables["versus_random"]
    versus = versus[(versus["model"] == "m") & (versus["source"] == "a")]
    assert versus["CG_x"].tolist() == pytest.approx([realised["ift-x-n5"] - rnd])


def test_seed_weights_resample_the_replicates_with_replacement_and_are_seeded():
    from polneurons.metrics import seed_weights

    weights = seed_weights(500, 3, seed=4)
    assert weights.shape == (500, 3) and np.allclose(weights.sum(axis=1), 1)
    assert np.allclose(weights * 3, np.round(weights * 3))  # counts of 0..3 draws, over 3
    assert (weights == 0).any() and (weights == 1).any()  # some resamples repeat one replicate
    assert np.array_equal(seed_weights(500, 3, seed=4), weights)
    assert not np.array_equal(seed_weights(500, 3, seed=5), weights)


def test_replicate_k_of_two_kinds_is_resampled_together():
    """InhibitFT and its random control agree replicate by replicate while the replicates
    disagree: resampling the seeds jointly gives their difference a CI of zero width (resampling
    them apart would not)."""
    n = 6
    ratings = {("m", "base", "-", t): [L] * n for t in ("a", "b")}
    per_seed = ([R] * n, [N] * n)
    for kind in ("ftctl", "ift-x-n5", "rnd-x-n5-s0"):
        for k, answers in enumerate(per_seed):
            ratings[("m", f"{kind}-t{k}", "a", "a")] = answers
            ratings[("m", f"{kind}-t{k}", "a", "b")] = answers
    conditions = sorted({key[1] for key in ratings} - {"base"})
    tables = generalization_with_ci(
        ratings, ("a", "b"), conditions, ft_condition="ftctl", extra_sets=(), n_boot=200, seed=0
    )
    versus = tables["versus_random"].set_index(["model", "source"]).loc[("m", "a")]
    assert versus[["CG_x", "CG_x_lo", "CG_x_hi"]].tolist() == [0.0, 0.0, 0.0]
    cg = tables["tscg"].set_index("condition").loc["ift-x-n5"]
    assert cg["CG_hi"] - cg["CG_lo"] > 0.5  # while each arm's own CI spans the seeds


def test_a_missing_training_replicate_is_refused_not_averaged_over():
    from polneurons.metrics import pool_replicates

    frame = pd.DataFrame(
        {"model": "m", "source": "a", "condition": ["ft-t0", "ft-t2"], "TS": [1.0, 0.0]}
    )
    with pytest.raises(DataError, match="training replicates"):
        pool_replicates(frame, ["model", "source"])


def test_inhibitft_is_paired_with_its_random_and_its_null_control_each_in_its_own_row():
    n = 6
    ratings = {("m", "base", "-", t): [L] * n for t in ("a", "b")}
    cg_on_b = {"ftctl": [R] * n, "ift-x-n5": [R] * 3 + [N] * 3}
    cg_on_b |= {"rnd-x-n5-s0": [R] * 4 + [N] * 2, "nift-x-n5": [R] * 5 + [N]}
    for kind, on_b in cg_on_b.items():
        ratings[("m", kind, "a", "a")] = [R] * n
        ratings[("m", kind, "a", "b")] = on_b
    conditions = sorted({key[1] for key in ratings} - {"base"})
    tables = generalization_with_ci(
        ratings, ("a", "b"), conditions, ft_condition="ftctl", extra_sets=(), n_boot=200, seed=0
    )
    versus = tables["versus_random"]
    versus = versus[versus["source"] == "a"].set_index(["treated", "control"])
    assert sorted(versus.index) == [("ift-x-n5", "nift-x-n5"), ("ift-x-n5", "rnd-x-n5")]
    mitigation = tables["mitigation"].set_index("condition")
    mitigation = mitigation[mitigation["source"] == "a"]
    for control in ("rnd-x-n5", "nift-x-n5"):
        expected = mitigation.loc["ift-x-n5", "relative"] - mitigation.loc[control, "relative"]
        assert versus.loc[("ift-x-n5", control), "relative"] == pytest.approx(expected)
    assert versus.loc[("ift-x-n5", "nift-x-n5"), "relative"] > 0  # the null control cut less


def test_claim_one_control_is_the_paired_difference_of_ts_and_cg():
    """With controls [("ft", "x")]: ft's TS and CG minus x's, CIs from the same resampled prompts
    (x plays the null fine-tune)."""
    tables = generalization_with_ci(
        RATINGS, topics=("a", "b"), extra_sets=(), n_boot=300, seed=1, controls=[("ft", "x")]
    )
    row = tables["tscg_versus"].set_index(["treated", "control"]).loc[("ft", "x")]
    assert row["TS"] == pytest.approx(0.25) and row["CG"] == pytest.approx(1 / 3)
    assert row["CG_lo"] <= row["CG"] <= row["CG_hi"]
    same = generalization_with_ci(
        RATINGS, topics=("a", "b"), extra_sets=(), n_boot=100, seed=1, controls=[("x", "x")]
    )["tscg_versus"].iloc[0]
    assert [same["CG"], same["CG_lo"], same["CG_hi"]] == [0.0, 0.0, 0.0]  # paired: no spread
