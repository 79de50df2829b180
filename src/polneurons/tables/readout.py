"""The teacher-forced readout's tables (method.md: Teacher-forced readout): per fine-tuned run,
neuron set and direction, the share of the fine-tuning shift of S_ll that writing the set
recovers (sufficiency) or removes (necessity), per topic and pooled over topics, with paired
bootstrap CIs over pairs; each set of G against its random control; and, with condition
crossed, whether S_t moves its own topic more than the others (`specificity_readout`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polneurons.kinds import split_draw
from polneurons.readout import DIRECTIONS, readout_share
from polneurons.runs import run_of_path
from polneurons.tables.common import interval_verdict
from polneurons.tables.patching import CROSSED, patching_pairs

POOLED = "all"
CROSS_TOPIC = "other topics"  # pooled over every topic but the run's source: the cross-topic shift
KEYS = ["model", "leaning", "source"]
READOUT_COLUMNS = [
    *KEYS, "condition", "direction", "topic", "pairs", "draws", "S_X", "S_M0", "S_Ms",
    "share", "share_lo", "share_hi", "share_sd", "why_undefined",
]  # fmt: skip
CONTRAST_COLUMNS = [
    *KEYS, "direction", "treated", "control", "treated_share", "treated_lo", "treated_hi",
    "control_share",
    "difference", "difference_lo", "difference_hi", "draws",
]  # fmt: skip
NO_SHIFT = "fine-tuning did not move S_ll on these pairs (S_ll(M_s) = S_ll(M0))"
SPECIFICITY_COLUMNS = [
    *KEYS, "direction", "topic", "on_t", "on_t_lo", "on_t_hi", "on_others", "on_others_lo",
    "on_others_hi", "difference", "difference_lo", "difference_hi", "verdict", "why_undefined",
]  # fmt: skip


def crossed_set_name(topic: str) -> str:
    """The readout's name of S_t of `topic` written on another topic's pairs.

    >>> split_crossed(crossed_set_name("race")), split_crossed("patch-general")
    (('patch-crossed', 'race'), ('patch-general', ''))
    """
    return f"{CROSSED}@{topic}"


def split_crossed(name: str) -> tuple[str, str]:
    """(condition, patched topic) of a readout set name: S_t on another topic's pairs is
    condition `patch-crossed` with its t; any other set has no patched topic."""
    condition, _, topic = name.partition("@")
    return condition, topic


def collect_readouts(paths) -> pd.DataFrame:
    """Every run's readout files (`<run>/readout/<topic>.csv`), with model, leaning, source."""
    frames = []
    for path in paths:
        run = run_of_path(Path(path).parent)  # the folder `readout` stands where a file would
        frame = pd.read_csv(path).assign(**{key: run[key] for key in KEYS})
        frames.append(frame)
    columns = [*KEYS, "condition", "direction", "topic", "patched_topic", "pair", "S_ll"]
    readouts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    if "patched_topic" not in readouts:
        readouts["patched_topic"] = ""
    readouts["patched_topic"] = readouts["patched_topic"].fillna("")
    return readouts


class PairResampler:
    """Paired bootstrap over pairs, stratified by topic: the same resampled pairs for every
    set and direction of a run, so differences between sets get paired CIs."""

    def __init__(self, topics: dict[str, np.ndarray], n_boot: int, seed: int):
        rng = np.random.default_rng(seed)
        self.topics = topics  # topic -> pair ids in a fixed order
        # per topic, [n_boot, pairs]: how often each pair is drawn in each replicate
        self.counts = {
            topic: np.stack(
                [
                    np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
                    for _ in range(n_boot)
                ]
            )
            for topic, ids in topics.items()
        }

    def means(self, values: dict[str, np.ndarray], names: list[str]) -> tuple[float, np.ndarray]:
        """(mean, bootstrap means) of per-pair values pooled over the topics `names`."""
        total = sum(len(self.topics[t]) for t in names)
        point = sum(values[t].sum() for t in names) / total
        boot = sum(self.counts[t] @ values[t] for t in names) / total
        return float(point), boot

    def source_and_cross(self, values: dict[str, np.ndarray], source: str, others: list[str]):
        """(TS, its bootstrap, CG, its bootstrap) of per-pair shifts: their mean on the source
        topic, and the mean over the `others` of each topic's mean (`tables.stance.loglik_shift`);
        NaN and None for a side without topics."""
        ts, ts_boot = self.means(values, [source]) if source in self.topics else (np.nan, None)
        if not others:
            return ts, ts_boot, np.nan, None
        per_topic = [self.means(values, [t]) for t in others]
        cg = float(np.mean([point for point, _ in per_topic]))
        return ts, ts_boot, cg, np.mean([boot for _, boot in per_topic], axis=0)


def _per_pair(run: pd.DataFrame, condition: str, direction: str, topics) -> dict[str, np.ndarray]:
    rows = run[(run["condition"] == condition) & (run["direction"].fillna("") == direction)]
    by_topic = rows.set_index(["topic", "pair"])["S_ll"]
    return {
        topic: by_topic.loc[topic].reindex(ids).to_numpy(float) for topic, ids in topics.items()
    }


def percentile_ci(point: float, replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """The percentile CI of a figure over its bootstrap replicates; none for an undefined
    figure (replicates that happen to be defined make no interval for it)."""
    if not np.isfinite(point):
        return float("nan"), float("nan")
    values = replicates[np.isfinite(replicates)]
    if not len(values):
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _run_tables(key, run: pd.DataFrame, n_boot: int, seed: int, alpha: float):
    """`readout_tables` of one run: (share rows, contrast rows)."""
    shares, contrasts = [], []
    ids = run[run["condition"] == "base"].groupby("topic")["pair"].apply(sorted)
    topics = {topic: np.asarray(ids[topic]) for topic in dict.fromkeys(run["topic"])}
    resample = PairResampler(topics, n_boot, seed)
    # each topic alone, all pooled, and the cross-topic pool (every topic but the source)
    groups = {topic: [topic] for topic in topics} | {POOLED: list(topics)}
    cross = [topic for topic in topics if topic != key[2]]
    if cross and len(cross) < len(topics):
        groups[CROSS_TOPIC] = cross
    base = _per_pair(run, "base", "", topics)
    tuned = _per_pair(run, "ft", "", topics)
    sets = [c for c in dict.fromkeys(run["condition"]) if c not in ("base", "ft")]
    per_pair = {
        (condition, direction): _per_pair(run, condition, direction, topics)
        for condition in sets
        for direction in DIRECTIONS
    }
    drawn: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
    for (condition, direction), values in per_pair.items():
        pooled_kind, draw = split_draw(condition)
        if draw is not None:
            drawn.setdefault((pooled_kind, direction), []).append(values)
    boot: dict[tuple[str, str], np.ndarray] = {}
    point: dict[tuple[str, str], float] = {}

    def add(condition, direction, values, draws, draw_shares=None):
        for topic, names in groups.items():
            s_x, b_x = resample.means(values, names)
            s_0, b_0 = resample.means(base, names)
            s_s, b_s = resample.means(tuned, names)
            share = readout_share(direction, s_x, s_0, s_s)
            reps = readout_share(direction, b_x, b_0, b_s)
            lo, hi = percentile_ci(share, reps, alpha)
            spread = (
                float(np.std([d[topic] for d in draw_shares], ddof=1))
                if draw_shares and len(draw_shares) > 1
                else float("nan")
            )
            shares.append(
                dict(
                    zip(KEYS, key, strict=True),
                    condition=condition,
                    direction=direction,
                    topic=topic,
                    pairs=sum(len(topics[t]) for t in names),
                    draws=draws,
                    S_X=s_x,
                    S_M0=s_0,
                    S_Ms=s_s,
                    share=share,
                    share_lo=lo,
                    share_hi=hi,
                    share_sd=spread,
                    why_undefined="" if np.isfinite(share) else NO_SHIFT,
                )  # fmt: skip
            )
            if topic == POOLED:
                boot[condition, direction], point[condition, direction] = reps, share

    for (condition, direction), values in per_pair.items():
        add(condition, direction, values, 1)
    for (pooled_kind, direction), draws in drawn.items():
        mean = {t: np.mean([d[t] for d in draws], axis=0) for t in topics}
        own = [
            {
                t: readout_share(
                    direction,
                    resample.means(d, names)[0],
                    resample.means(base, names)[0],
                    resample.means(tuned, names)[0],
                )
                for t, names in groups.items()
            }
            for d in draws
        ]
        add(pooled_kind, direction, mean, len(draws), own)
    conditions = [c for c, _ in point]
    for treated, control in patching_pairs(conditions):
        for direction in DIRECTIONS:
            if (treated, direction) not in point or (control, direction) not in point:
                continue
            diff = point[treated, direction] - point[control, direction]
            reps = boot[treated, direction] - boot[control, direction]
            lo, hi = percentile_ci(diff, reps, alpha)
            t_share = point[treated, direction]
            t_lo, t_hi = percentile_ci(t_share, boot[treated, direction], alpha)
            contrasts.append(
                dict(
                    zip(KEYS, key, strict=True),
                    direction=direction,
                    treated=treated,
                    control=control,
                    treated_share=t_share,
                    treated_lo=t_lo,
                    treated_hi=t_hi,
                    control_share=point[control, direction],
                    difference=diff,
                    difference_lo=lo,
                    difference_hi=hi,
                    draws=len(drawn.get((control, direction), [])) or 1,
                )  # fmt: skip
            )
    return shares, contrasts


def readout_tables(
    readouts: pd.DataFrame, n_boot: int, seed: int, alpha: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shares, contrasts) of every run's readout (`collect_readouts`).

    shares: per (run, set, direction, topic, "all" or "other topics", every topic but the
    run's source): mean S_ll of the intervened model, of M0
    and of M_s, and the share (`readout.readout_share`) with its percentile CI. A random
    control's draws appear apart and pooled under the kind without its draw (`share` of the
    per-pair S_ll averaged over draws; `share_sd`: the spread of the draws' own shares).
    contrasts: pooled over topics, each set of G minus its random control
    (`tables.patching.patching_pairs`), paired CIs from the same resampled pairs.
    """
    shares, contrasts = [], []
    readouts = readouts[readouts["condition"] != CROSSED]  # S_t off its topic: specificity
    for key, run in readouts.groupby(KEYS, dropna=False):
        run_shares, run_contrasts = _run_tables(key, run, n_boot, seed, alpha)
        shares += run_shares
        contrasts += run_contrasts
    return (
        pd.DataFrame(shares, columns=READOUT_COLUMNS),
        pd.DataFrame(contrasts, columns=CONTRAST_COLUMNS),
    )


JUDGE_READOUT = "judge"
DOSE_COLUMNS = [
    *KEYS, "readout", "arm", "dose", "neurons", "share", "share_lo", "share_hi", "condition",
]  # fmt: skip


def dose_curves(judge_curve: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """The dose-response in both readouts (method.md: Activation patching, Teacher-forced
    readout): each point of the judge's curve (`tables.patching.dose_curve`: arm, dose,
    neurons patched, recovered share pooled over test sets), and the same set's
    teacher-forced share pooled over topics (`readout_tables`' `all` rows) in each direction,
    as rows of one table with a `readout` column (`judge`, `teacher-forced, <direction>`).
    A set the readout did not score has judge rows only.

    >>> judge = pd.DataFrame({"model": "m", "leaning": "r", "source": "s", "arm": "G",
    ...     "dose": [100.0], "neurons": 10, "recovered": 0.5, "recovered_lo": 0.1,
    ...     "recovered_hi": 0.9, "condition": "patch-general"})
    >>> shares = pd.DataFrame({"model": "m", "leaning": "r", "source": "s", "topic": "all",
    ...     "condition": "patch-general", "direction": ["sufficiency", "necessity"],
    ...     "share": [0.3, 0.2], "share_lo": 0.0, "share_hi": 0.6})
    >>> dose_curves(judge, shares)[["readout", "share"]].values.tolist()
    [['judge', 0.5], ['teacher-forced, sufficiency', 0.3], ['teacher-forced, necessity', 0.2]]
    """
    rows = []
    judge = judge_curve.rename(
        columns={"recovered": "share", "recovered_lo": "share_lo", "recovered_hi": "share_hi"}
    ).assign(readout=JUDGE_READOUT)
    pooled = shares[shares["topic"] == POOLED]
    for point in judge.to_dict("records"):
        rows.append(point)
        same = pooled
        for key in [*KEYS, "condition"]:
            same = same[same[key] == point[key]]
        for direction in DIRECTIONS:
            for read in same[same["direction"] == direction].to_dict("records"):
                rows.append(
                    {
                        **point,
                        "readout": f"teacher-forced, {direction}",
                        **{c: read[c] for c in ("share", "share_lo", "share_hi")},
                    }
                )
    return pd.DataFrame(rows, columns=DOSE_COLUMNS)


def _intervention_shift(resample, direction, values, base, tuned, names):
    """(point, bootstrap) of the shift an intervention makes on the pairs of `names`:
    S_ll(M0 + X) - S_ll(M0) (sufficiency) or S_ll(M_s) - S_ll(M_s - X) (necessity)."""
    s_x, b_x = resample.means(values, names)
    if direction == "sufficiency":
        s_0, b_0 = resample.means(base, names)
        return s_x - s_0, b_x - b_0
    s_s, b_s = resample.means(tuned, names)
    return s_s - s_x, b_s - b_x


def specificity_readout(readouts: pd.DataFrame, n_boot: int, seed: int, alpha: float):
    """Is S_t specific to t, read out without a judge (method.md: Teacher-forced readout)? Per
    (run, direction, topic t), in S_ll units, signed by d = sign(S_ll(M_s, t) - S_ll(M0, t)):

        on_t      = d * shift of S_t written on t's pairs                   (condition specific)
        on_others = d * mean over t' != t of the shift of S_t on t''s pairs  (condition crossed)
        difference = on_t - on_others

    where the shift is S_ll(M0 + S_t) - S_ll(M0) (sufficiency) or S_ll(M_s) - S_ll(M_s - S_t)
    (necessity): the judge's `tables.patching.specificity` in each direction. CIs from one
    paired bootstrap over pairs (stratified by topic); `verdict` holds if the difference's CI
    lies above 0. Runs without crossed rows have none.
    """
    rows = []
    for key, run in readouts.groupby(KEYS, dropna=False):
        crossed = run[run["condition"] == CROSSED]
        if crossed.empty:
            continue
        ids = run[run["condition"] == "base"].groupby("topic")["pair"].apply(sorted)
        topics = {topic: np.asarray(ids[topic]) for topic in dict.fromkeys(run["topic"])}
        resample = PairResampler(topics, n_boot, seed)
        models = _per_pair(run, "base", "", topics), _per_pair(run, "ft", "", topics)
        for topic in topics:
            others = {t: topics[t] for t in topics if t != topic}
            mine = crossed[crossed["patched_topic"] == topic]
            moved = resample.means(models[1], [topic])[0] - resample.means(models[0], [topic])[0]
            sign = np.sign(moved) if moved != 0 else np.nan
            for direction in DIRECTIONS:
                own = _per_pair(run, "patch-specific", direction, {topic: topics[topic]})
                off = _per_pair(mine, CROSSED, direction, others)
                on_t, b_on_t = _intervention_shift(resample, direction, own, *models, [topic])
                parts = [
                    _intervention_shift(resample, direction, off, *models, [t]) for t in others
                ]
                on_t, b_on_t = sign * on_t, sign * b_on_t
                on_others = sign * float(np.mean([part[0] for part in parts]))
                b_others = sign * np.mean([part[1] for part in parts], axis=0)
                difference = on_t - on_others
                lo, hi = percentile_ci(difference, b_on_t - b_others, alpha)
                t_lo, t_hi = percentile_ci(on_t, b_on_t, alpha)
                o_lo, o_hi = percentile_ci(on_others, b_others, alpha)
                rows.append(
                    dict(
                        zip(KEYS, key, strict=True),
                        direction=direction,
                        topic=topic,
                        on_t=on_t,
                        on_t_lo=t_lo,
                        on_t_hi=t_hi,
                        on_others=on_others,
                        on_others_lo=o_lo,
                        on_others_hi=o_hi,
                        difference=difference,
                        difference_lo=lo,
                        difference_hi=hi,
                        verdict=interval_verdict(lo, hi),
                        why_undefined="" if np.isfinite(sign) else NO_SHIFT,
                    )
                )
    return pd.DataFrame(rows, columns=SPECIFICITY_COLUMNS)
