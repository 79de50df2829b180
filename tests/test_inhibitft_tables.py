"""Claim 3 read without a judge: InhibitFT's cut of the cross-topic S_ll shift on the
log-likelihood pairs, and its ceiling from the readout's necessity direction, on crafted runs."""

import numpy as np
import pandas as pd
import pytest

from polneurons.tables import claims
from polneurons.tables.inhibitft import loglik_cuts
from polneurons.tables.readout import CROSS_TOPIC, POOLED, readout_tables

SOURCE, OTHERS = "crime_and_gun", ("race", "science")
PAIRS = 8


def loglik(shifts: dict, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """collect_loglik's rows: per condition, S_ll = M0's + the given (TS, CG) shift on every pair
    of the source topic and of the other topics, plus each condition's own per-pair noise."""
    rng = np.random.default_rng(seed)
    topics = (SOURCE, *OTHERS)
    base = {(t, i): rng.normal(0, 1) for t in topics for i in range(PAIRS)}
    rows = [
        {"model": "m", "leaning": None, "source": None, "condition": "base", "topic": t,
         "pair": i, "value": base[t, i]}
        for t in topics for i in range(PAIRS)
    ]  # fmt: skip
    for condition, (ts, cg) in shifts.items():
        rows += [
            {"model": "m", "leaning": "right", "source": SOURCE, "condition": condition,
             "topic": t, "pair": i,
             "value": base[t, i] + (ts if t == SOURCE else cg) + rng.normal(0, noise)}
            for t in topics for i in range(PAIRS)
        ]  # fmt: skip
    return pd.DataFrame(rows)


def cuts_of(ift=(0.9, 0.3), random=((1.0, 0.5), (1.0, 0.7))) -> pd.DataFrame:
    shifts = {"ft": (1.0, 0.6), "ift-anchor-n5": ift}
    shifts |= {f"rnd-anchor-n5-s{k}": r for k, r in enumerate(random)}
    return loglik_cuts(loglik(shifts), "ft", n_boot=300, seed=0, alpha=0.05)


def shift(frame, condition, topics):
    """By hand: the mean over `topics` of each topic's mean S_ll shift from M0 (the draws of a
    random control averaged pair by pair first)."""
    rows = frame[frame["condition"].str.startswith(condition)]
    per_pair = rows.groupby(["topic", "pair"])["value"].mean()
    base = frame[frame["condition"] == "base"].set_index(["topic", "pair"])["value"]
    return np.mean([(per_pair.loc[t] - base.loc[t]).mean() for t in topics])


def test_the_judge_free_cut_follows_its_formula_and_pools_the_random_draws():
    shifts = {"ft": (1.0, 0.6), "ift-anchor-n5": (0.9, 0.3)}
    shifts |= {"rnd-anchor-n5-s0": (1.0, 0.5), "rnd-anchor-n5-s1": (1.0, 0.7)}
    frame = loglik(shifts)
    cuts = loglik_cuts(frame, "ft", n_boot=300, seed=0, alpha=0.05)
    cuts = cuts.set_index(["condition", "versus"])
    arm = cuts.loc[("ift-anchor-n5", "rnd-anchor-n5")]
    cg_ft = shift(frame, "ft", OTHERS)
    cut = 1 - shift(frame, "ift-anchor-n5", OTHERS) / cg_ft
    kept = shift(frame, "ift-anchor-n5", [SOURCE]) / shift(frame, "ft", [SOURCE])
    assert arm["CG_ll_cut"] == pytest.approx(cut) and cut == pytest.approx(0.5, abs=0.1)
    assert arm["TS_ll_kept"] == pytest.approx(kept) and kept == pytest.approx(0.9, abs=0.1)
    assert arm["CG_ll_cut_lo"] <= arm["CG_ll_cut"] <= arm["CG_ll_cut_hi"]
    random = cuts.loc[("rnd-anchor-n5", "")]  # the draws' per-pair S_ll averaged
    assert random["pooled_runs"] == 2
    assert random["CG_ll_cut"] == pytest.approx(1 - shift(frame, "rnd-anchor-n5", OTHERS) / cg_ft)
    assert arm["difference"] == pytest.approx(cut - random["CG_ll_cut"])
    assert arm["difference_lo"] > 0


@pytest.mark.parametrize(
    ("ift", "verdict"),
    [((1.0, 0.2), "holds"), ((1.0, 0.6), "not shown"), ((1.0, 0.9), "reversed")],
)
def test_the_judge_free_claim_3_can_hold_not_show_and_reverse(ift, verdict):
    cuts = cuts_of(ift=ift, random=((1.0, 0.6), (1.0, 0.6)))
    table = claims.claims_table({"inhibitft_ll": cuts}, ts_kept_margin=0.8)
    row = table[table["claim"].str.contains("cross-topic S_ll")].iloc[0]
    assert row["readout"] == claims.TEACHER_FORCED_LL and row["verdict"] == verdict
    kept = table[table["claim"].str.contains("keeps TS_ll")].iloc[0]
    assert kept["verdict"] == "holds"  # TS_ll 1.0 of 1.0 kept


def readout_rows(necessity: dict, condition="patch-dose5") -> pd.DataFrame:
    """One run's readout.csv: M0 at 0, M_s at 1 on every topic, and `condition`'s necessity
    S_ll per topic (what is left of the shift when the set is restored to M0 in M_s)."""
    rng = np.random.default_rng(0)
    topics = (SOURCE, *OTHERS)
    jitter = {(t, i): rng.normal(0, 0.05) for t in topics for i in range(PAIRS)}
    values = {("base", ""): dict.fromkeys(topics, 0.0), ("ft", ""): dict.fromkeys(topics, 1.0)}
    values[condition, "necessity"] = necessity
    values[condition, "sufficiency"] = dict.fromkeys(topics, 0.5)
    rows = [
        {"model": "m", "leaning": "right", "source": SOURCE, "condition": c, "direction": d,
         "topic": t, "pair": i, "S_ll": v[t] + jitter[t, i]}
        for (c, d), v in values.items() for t in topics for i in range(PAIRS)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_cross_topic_pool_leaves_out_the_source_topic():
    # restoring the set removes all of the source topic's shift and half of the others'
    necessity = {SOURCE: 0.0, "race": 0.5, "science": 0.5}
    shares, _ = readout_tables(readout_rows(necessity), n_boot=100, seed=0, alpha=0.05)
    removed = shares[shares["direction"] == "necessity"].set_index("topic")
    assert removed.loc[CROSS_TOPIC, "share"] == pytest.approx(0.5, abs=1e-9)
    assert removed.loc[CROSS_TOPIC, "pairs"] == PAIRS * len(OTHERS)
    assert removed.loc[POOLED, "share"] == pytest.approx(2 / 3, abs=1e-9)
    assert removed.loc[SOURCE, "share"] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("left", "verdict"), [(0.4, "holds"), (1.0, "not shown"), (1.3, "reversed")]
)
def test_the_ceiling_claim_reads_the_cross_topic_necessity_share(left, verdict):
    necessity = {SOURCE: 0.0, "race": left, "science": left}
    shares, contrasts = readout_tables(readout_rows(necessity), n_boot=300, seed=0, alpha=0.05)
    tables = {"readout": shares, "readout_contrasts": contrasts, "inhibitft": pd.DataFrame()}
    table = claims.claims_table(tables, headline_n=5, ts_kept_margin=0.8)
    ceiling = table[table["claim"].str.startswith("3: ceiling: F_5")].iloc[0]
    assert ceiling["measured"] == pytest.approx(1 - left, abs=1e-9)
    assert ceiling["verdict"] == verdict and ceiling["readout"] == "teacher-forced, necessity"
    without = claims.claims_table(
        {"readout": shares, "readout_contrasts": contrasts}, ts_kept_margin=0.8
    )
    assert not without["claim"].str.startswith("3: ceiling").any()  # no InhibitFT, no ceiling


def test_the_judge_free_cut_pools_training_replicates_and_its_ci_covers_their_disagreement():
    """Two training replicates of each kind: the cut is their mean, and its CI (seeds resampled
    with the pairs) is wider when the replicates disagree than when they agree."""

    def cuts(second_ift_cg):
        shifts = {"ft": (1.0, 0.6), "ft-t1": (1.0, 0.6)}
        shifts |= {"ift-anchor-n5": (0.9, 0.3), "ift-anchor-n5-t1": (0.9, second_ift_cg)}
        frame = loglik(shifts, noise=0.01)
        table = loglik_cuts(frame, "ft", n_boot=400, seed=0, alpha=0.05)
        return frame, table.set_index("condition").loc["ift-anchor-n5"]

    frame, agree = cuts(0.3)
    _, disagree = cuts(0.6)
    cg_ft = shift(frame, "ft", OTHERS)  # both replicates' pairs averaged
    assert agree["CG_ll_cut"] == pytest.approx(1 - shift(frame, "ift-anchor-n5", OTHERS) / cg_ft)
    assert agree["pooled_runs"] == 2
    width = {
        name: row["CG_ll_cut_hi"] - row["CG_ll_cut_lo"]
        for name, row in (("agree", agree), ("disagree", disagree))
    }
    assert width["disagree"] > 3 * width["agree"]
    # the replicates cut 0.5 and 0.0: the CI reaches both
    assert disagree["CG_ll_cut"] == pytest.approx(0.25, abs=0.05)
    assert disagree["CG_ll_cut_lo"] < 0.05 and disagree["CG_ll_cut_hi"] > 0.45
