"""The teacher-forced readout's tables and claims on crafted readouts whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from polneurons.plots import dose_response
from polneurons.tables import claims
from polneurons.tables.readout import (
    NO_SHIFT,
    dose_curves,
    readout_tables,
    specificity_readout,
)

RUN = {"model": "m", "leaning": "right", "source": "crime_and_gun"}
TOPICS = ("race", "science")
PAIRS = 6


def readout(values: dict, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Rows of one run's readout.csv: per (condition, direction), every pair of every topic at
    the given S_ll plus per-pair noise (the same noise for every condition: paired)."""
    rng = np.random.default_rng(seed)
    jitter = {(t, i): rng.normal(0, noise) for t in TOPICS for i in range(PAIRS)}
    rows = [
        {**RUN, "condition": c, "direction": d, "topic": t, "pair": i, "S_ll": v + jitter[t, i]}
        for (c, d), v in values.items()
        for t in TOPICS
        for i in range(PAIRS)
    ]
    return pd.DataFrame(rows)


def values(general=(0.5, 0.5), random=((0.1, 0.1), (0.3, 0.3)), base=0.0, tuned=1.0):
    """S_ll of base, ft, G and two random draws; (sufficiency, necessity) per set."""
    out = {("base", ""): base, ("ft", ""): tuned}
    sets = {"patch-general": general, "patch-random-s0": random[0], "patch-random-s1": random[1]}
    for name, (suff, nec) in sets.items():
        out[name, "sufficiency"], out[name, "necessity"] = suff, nec
    return out


def test_shares_follow_both_formulas_and_draws_are_pooled_with_their_spread():
    shares, contrasts = readout_tables(readout(values()), n_boot=200, seed=0, alpha=0.05)
    pooled = shares[shares["topic"] == "all"].set_index(["condition", "direction"])
    # sufficiency: (0.5 - 0) / (1 - 0); necessity: (1 - 0.5) / (1 - 0)
    assert pooled.loc[("patch-general", "sufficiency"), "share"] == pytest.approx(0.5, abs=1e-9)
    assert pooled.loc[("patch-general", "necessity"), "share"] == pytest.approx(0.5, abs=1e-9)
    random = pooled.loc[("patch-random", "sufficiency")]
    assert random["share"] == pytest.approx(0.2) and random["draws"] == 2
    assert random["share_sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert random["share_lo"] <= random["share"] <= random["share_hi"]
    assert set(shares["topic"]) == {*TOPICS, "all"}
    assert (shares.loc[shares["topic"] == "all", "pairs"] == PAIRS * len(TOPICS)).all()
    row = contrasts.set_index("direction").loc["sufficiency"]
    assert (row["treated"], row["control"]) == ("patch-general", "patch-random")
    assert row["difference"] == pytest.approx(0.3) and row["difference_lo"] > 0


def test_a_readout_without_a_shift_is_undefined_and_says_why():
    shares, contrasts = readout_tables(readout(values(tuned=0.0)), n_boot=50, seed=0, alpha=0.05)
    assert shares["share"].isna().all() and shares["share_lo"].isna().all()
    assert (shares["why_undefined"] == NO_SHIFT).all()
    assert contrasts["difference"].isna().all() and contrasts["difference_lo"].isna().all()
    table = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    assert (table["verdict"] == "undefined").all()


@pytest.mark.parametrize(
    ("general", "verdict"),
    [
        ((0.6, 0.6), "holds"),  # G recovers 0.6 and removes 0.4; random 0.2 and 0.2
        ((0.2, 0.8), "not shown"),  # G recovers and removes what random does
        ((-0.3, 1.3), "reversed"),  # G moves each model against the fine-tune's direction
    ],
)
def test_the_readout_claims_can_hold_not_show_and_reverse(general, verdict):
    random = ((0.2, 0.8), (0.2, 0.8))  # S_ll 0.2 in M0 + X, 0.8 in M_s - X
    shares, contrasts = readout_tables(
        readout(values(general=general, random=random)), n_boot=300, seed=0, alpha=0.05
    )
    table = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    rows = table.set_index(["claim", "readout"])
    suff = rows.loc[("2: G recovers more of the shift than random", "teacher-forced, sufficiency")]
    assert suff["verdict"] == verdict
    assert suff["control"] == "patch-random" and suff["measured_lo"] <= suff["measured"]
    nec = rows.loc[
        (
            "2: G restored to M0's values removes more of the shift than random",
            "teacher-forced, necessity",
        )
    ]
    assert nec["verdict"] == verdict  # removes 1 - general[1]


def test_readout_claims_sit_beside_the_judges_and_name_their_instrument():
    shares, contrasts = readout_tables(readout(values()), n_boot=50, seed=0, alpha=0.05)
    table = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    assert list(table.columns) == claims.CLAIM_COLUMNS
    assert set(table["readout"]) == {"teacher-forced, sufficiency", "teacher-forced, necessity"}
    assert table["rule"].str.contains("one random draw").sum() == 0  # two draws here


def test_readout_claims_read_g_and_its_doses_against_every_control_but_the_ceiling():
    """With all, complement and null_general beside G, random and a dose, the claims are G's
    and the dose's against each control; `all - G` stays in the contrasts table only."""
    sets = values()
    for name, suff in [
        ("patch-all", 0.9),
        ("patch-complement", 0.4),
        ("patch-null_general", 0.3),
        ("patch-dose30", 0.25),
        ("patch-dose30-random-s0", 0.1),
    ]:
        sets[name, "sufficiency"], sets[name, "necessity"] = suff, 1 - suff
    shares, contrasts = readout_tables(readout(sets), n_boot=100, seed=0, alpha=0.05)
    pairs = set(zip(contrasts["treated"], contrasts["control"], strict=True))
    assert ("patch-all", "patch-general") in pairs
    table = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    contrast_rows = table[table["control"] != ""]
    assert set(contrast_rows["control"]) == {
        "patch-random",
        "patch-complement",
        "patch-null_general",
        "patch-dose30-random",
    }
    assert not table["claim"].str.contains("all").any()
    dose = contrast_rows[contrast_rows["control"] == "patch-dose30-random"]
    assert dose["claim"].str.startswith("2: the top 30% of G").all()
    assert dose["rule"].str.contains("the top 30% of G recovers|the top 30% of G removes").all()
    # one draw of a random control is said; a complement has no draws to speak of
    assert dose["rule"].str.contains("one random draw").all()
    assert not table.loc[table["control"] == "patch-complement", "rule"].str.contains("draw").any()


def test_s_t_is_read_out_against_as_many_random_neurons_outside_n_t():
    sets = values()
    for name, suff in [("patch-specific", 0.6), ("patch-specific-random-s0", 0.2)]:
        sets[name, "sufficiency"], sets[name, "necessity"] = suff, 1 - suff
    shares, contrasts = readout_tables(readout(sets), n_boot=200, seed=0, alpha=0.05)
    table = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    control = "as many random neurons outside N_t"
    rows = table[table["control"] == "patch-specific-random"].set_index("readout")
    assert set(rows.index) == {"teacher-forced, sufficiency", "teacher-forced, necessity"}
    suff = rows.loc["teacher-forced, sufficiency"]
    assert suff["claim"] == f"2: S_t on its own topic recovers more of the shift than {control}"
    assert suff["difference"] == pytest.approx(0.4) and suff["verdict"] == "holds"
    assert "one random draw" in suff["rule"]


def test_the_dose_response_carries_each_judged_point_in_both_readouts(tmp_path):
    shares, _ = readout_tables(readout(values()), n_boot=100, seed=0, alpha=0.05)
    judge = pd.DataFrame(
        [
            {**RUN, "arm": "G", "dose": 100.0, "neurons": 50, "recovered": 0.4,
             "recovered_lo": 0.1, "recovered_hi": 0.7, "condition": "patch-general"},
            {**RUN, "arm": "random", "dose": 100.0, "neurons": 50, "recovered": 0.1,
             "recovered_lo": -0.2, "recovered_hi": 0.4, "condition": "patch-random"},
            {**RUN, "arm": "G_null", "dose": 100.0, "neurons": 40, "recovered": 0.2,
             "recovered_lo": -0.1, "recovered_hi": 0.5, "condition": "patch-null_general"},
        ]
    )  # fmt: skip
    curves = dose_curves(judge, shares)
    pooled = shares[shares["topic"] == "all"].set_index(["condition", "direction"])["share"]
    for condition in ("patch-general", "patch-random"):
        rows = curves[curves["condition"] == condition].set_index("readout")
        assert (
            rows.loc["judge", "share"] == judge.set_index("condition").loc[condition, "recovered"]
        )
        for direction in ("sufficiency", "necessity"):
            # the random arm reads the draws pooled, as the judge's curve does
            assert rows.loc[f"teacher-forced, {direction}", "share"] == pytest.approx(
                pooled[condition, direction]
            )
        assert rows["neurons"].nunique() == 1  # every readout at the set's own size
    # a set the readout did not score (here G_null) keeps its judge's point only
    assert list(curves.loc[curves["arm"] == "G_null", "readout"]) == ["judge"]
    png, pdf = tmp_path / "dose.png", tmp_path / "dose.pdf"
    dose_response(curves, str(png), str(pdf), value="share")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"


def crossed_readout(on_t: float, on_others: float, tuned: float = 1.0) -> pd.DataFrame:
    """A run's readout with S_t of each topic written on its own pairs (patch-specific) and on
    the other topic's (patch-crossed): S_ll of M0 + S_t is on_t on t and on_others elsewhere;
    M_s - S_t mirrors it (tuned - the same shift)."""
    base = {**RUN, "topic": None, "patched_topic": ""}
    rng = np.random.default_rng(1)
    rows = []
    for topic in TOPICS:
        for pair in range(PAIRS):
            noise = rng.normal(0, 0.02)
            cell = {**base, "topic": topic, "pair": pair}
            rows += [
                {**cell, "condition": "base", "direction": "", "S_ll": noise},
                {**cell, "condition": "ft", "direction": "", "S_ll": tuned + noise},
            ]
            for direction, value in (("sufficiency", on_t), ("necessity", tuned - on_t)):
                rows.append(
                    {**cell, "condition": "patch-specific", "direction": direction,
                     "S_ll": value + noise}
                )  # fmt: skip
            for other in TOPICS:
                if other == topic:
                    continue
                for direction, value in (
                    ("sufficiency", on_others),
                    ("necessity", tuned - on_others),
                ):
                    rows.append(
                        {**cell, "condition": "patch-crossed", "patched_topic": other,
                         "direction": direction, "S_ll": value + noise}
                    )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "on_t, on_others, tuned, verdict",
    [
        (0.6, 0.1, 1.0, "holds"),
        (0.1, 0.6, 1.0, "reversed"),
        (0.3, 0.3, 1.0, "not shown"),
        (0.6, 0.1, -1.0, "reversed"),  # FT moved t down: moving it up is against the shift
        (0.6, 0.1, 0.0, "undefined"),  # no shift on t: no direction to sign by
    ],
)
def test_s_t_specificity_is_read_out_in_both_directions_and_can_fail(
    on_t, on_others, tuned, verdict
):
    readouts = crossed_readout(on_t, on_others, tuned)
    table = specificity_readout(readouts, n_boot=200, seed=0, alpha=0.05)
    assert set(table["direction"]) == {"sufficiency", "necessity"}
    assert sorted(table["topic"]) == sorted(TOPICS * 2)
    assert (table["verdict"] == verdict).all(), table
    if verdict != "undefined":
        sign = np.sign(tuned)
        assert table["difference"].to_numpy() == pytest.approx(sign * (on_t - on_others), abs=0.05)
    else:
        assert (table["why_undefined"] == NO_SHIFT).all()
    # the main shares leave S_t's off-topic rows out: they are this table's
    shares, _ = readout_tables(readouts, n_boot=50, seed=0, alpha=0.05)
    assert "patch-crossed" not in set(shares["condition"])
    rows = claims.claims_table({"specificity_ll": table}, ts_kept_margin=0.8)
    assert set(rows["readout"]) == {"teacher-forced, sufficiency", "teacher-forced, necessity"}
    assert (rows["verdict"] == verdict).all()


def test_a_ci_that_misses_its_point_draws_no_negative_error_bar(tmp_path):
    """A percentile CI of a ratio can lie beside its point: the figure still draws."""
    curve = pd.DataFrame(
        [{**RUN, "readout": "judge", "arm": "G", "dose": 100.0, "neurons": 5, "share": 0.5,
          "share_lo": 0.6, "share_hi": 0.9, "condition": "patch-general"}]
    )  # fmt: skip
    png, pdf = tmp_path / "d.png", tmp_path / "d.pdf"
    dose_response(curve, str(png), str(pdf), value="share")
    assert png.read_bytes()[:4] == b"\x89PNG"
