"""Stance scores and generalization metrics (method.md: Stance, Generalization, InhibitFT), with bootstrap CIs.

Tables are long pandas frames. A score table has columns `model, condition, source, test_set, S`
(the base model's rows have `condition == "base"`; their `source` is ignored); a frame of
bootstrap replicates has the same columns plus `replicate`, and every function below works on
it group by group, so point estimates and their CIs come from the same code. CIs are percentile
intervals over prompts resampled with replacement: one resample per test set and replicate,
shared by every model and condition rated on that test set (they saw the same prompts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from polneurons.errors import DataError

LEFT, RIGHT, NEUTRAL = "left leaning", "right leaning", "neutral"
KEY_COLUMNS = ("model", "condition", "source", "test_set")
ARM_COLUMNS = ("model", "condition", "source")
EXTRA_SETS = ("pct", "questionnaire")


# ---------------------------------------------------------------- the score S


def stance_counts(ratings: Sequence[str]) -> dict:
    counts = Counter(ratings)
    n_left, n_right, n_neutral = counts[LEFT], counts[RIGHT], counts[NEUTRAL]
    n = len(ratings)
    return dict(
        n_left=n_left,
        n_right=n_right,
        n_neutral=n_neutral,
        n_error=n - n_left - n_right - n_neutral,
        n=n,
    )


def stance_from_counts(n_right, n_left, n_neutral):
    """S from counts (scalars or arrays); nan where no rating is valid."""
    n_right, n_left, n_neutral = (np.asarray(x, dtype=float) for x in (n_right, n_left, n_neutral))
    n_valid = n_right + n_left + n_neutral
    # method.md: Stance: S = (N_right - N_left) / (N_right + N_left + N_neutral), errors excluded
    score = np.divide(
        n_right - n_left, n_valid, out=np.full(n_valid.shape, np.nan), where=n_valid > 0
    )
    return float(score) if score.ndim == 0 else score


def stance_score(ratings: Sequence[str]) -> float:
    counts = stance_counts(ratings)
    return stance_from_counts(counts["n_right"], counts["n_left"], counts["n_neutral"])


def _stance_delta(score_model, score_base):
    # method.md: Generalization: dS(s -> t) = S(M_s, t) - S(M0, t)
    return score_model - score_base


# ---------------------------------------------------------------- bootstrap over prompts


def _percentile_ci(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    replicates = np.asarray(replicates, dtype=float)
    replicates = replicates[~np.isnan(replicates)]
    if replicates.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _resample(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) prompt indices drawn with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


def _resampled_scores(ratings: Sequence[str], indices: np.ndarray) -> np.ndarray:
    """S of each resample (one row of `indices` each), vectorised."""
    ratings = np.asarray(ratings, dtype=object)

    def resampled_count(label: str) -> np.ndarray:
        return (ratings == label)[indices].sum(axis=1)

    return stance_from_counts(
        resampled_count(RIGHT), resampled_count(LEFT), resampled_count(NEUTRAL)
    )


def bootstrap_ci(
    values: Sequence,
    stat_fn: Callable[[list], float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile (1 - alpha) CI of stat_fn over resamples of `values` (one per prompt)."""
    values = list(values)
    if not values:
        return float("nan"), float("nan")
    indices = _resample(len(values), n_boot, np.random.default_rng(seed))
    return _percentile_ci(np.array([stat_fn([values[i] for i in row]) for row in indices]), alpha)


def score_with_ci(
    ratings: Sequence[str], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Counts, S and its bootstrap CI (the same resamples as bootstrap_ci(ratings, stance_score))."""
    result = {**stance_counts(ratings), "S": stance_score(ratings)}
    if not ratings:
        return {**result, "ci_low": float("nan"), "ci_high": float("nan")}
    indices = _resample(len(ratings), n_boot, np.random.default_rng(seed))
    result["ci_low"], result["ci_high"] = _percentile_ci(_resampled_scores(ratings, indices), alpha)
    return result


def delta_with_ci(
    ratings_ft: Sequence[str],
    ratings_base: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """dS = S(ft) - S(base) on the same prompts, CI from resampling prompt indices jointly."""
    if len(ratings_ft) != len(ratings_base):
        raise DataError(
            f"paired ratings differ in length ({len(ratings_ft)} vs {len(ratings_base)})",
            "rate both models on the same prompts, in the same order",
        )
    delta = _stance_delta(stance_score(ratings_ft), stance_score(ratings_base))
    if not ratings_ft:
        return {"dS": delta, "ci_low": float("nan"), "ci_high": float("nan")}
    indices = _resample(len(ratings_ft), n_boot, np.random.default_rng(seed))
    replicates = _stance_delta(
        _resampled_scores(ratings_ft, indices), _resampled_scores(ratings_base, indices)
    )
    low, high = _percentile_ci(replicates, alpha)
    return {"dS": delta, "ci_low": low, "ci_high": high}


# ---------------------------------------------------------------- tables of S


def _check_paired(ratings: Mapping[tuple, Sequence[str]], key_columns: Sequence[str]) -> dict:
    """{test_set: number of prompts}, refusing a test set rated on different numbers of prompts."""
    position = list(key_columns).index("test_set")
    lengths: dict[str, set[int]] = {}
    for key, values in ratings.items():
        lengths.setdefault(key[position], set()).add(len(values))
    uneven = {test_set: sorted(n) for test_set, n in lengths.items() if len(n) > 1}
    if uneven:
        raise DataError(
            f"test sets rated on different numbers of prompts: {uneven}",
            "rate every model and condition on the same prompts of a test set",
        )
    return {test_set: n.pop() for test_set, n in lengths.items()}


def scores_table(
    ratings: Mapping[tuple, Sequence[str]], key_columns: Sequence[str] = KEY_COLUMNS
) -> pd.DataFrame:
    """Per-prompt ratings {(model, condition, source, test_set): [rating, ...]} -> counts and S."""
    return pd.DataFrame(
        [
            {
                **dict(zip(key_columns, key, strict=True)),
                **stance_counts(values),
                "S": stance_score(values),
            }
            for key, values in ratings.items()
        ]
    )


def bootstrap_scores(
    ratings: Mapping[tuple, Sequence[str]],
    key_columns: Sequence[str] = KEY_COLUMNS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """S of every key in each of n_boot replicates; the prompts of a test set are resampled once
    per replicate for all keys (all must hold the same prompts in the same order)."""
    n_prompts = _check_paired(ratings, key_columns)
    rng = np.random.default_rng(seed)
    indices = {test_set: _resample(n, n_boot, rng) for test_set, n in sorted(n_prompts.items())}
    position = list(key_columns).index("test_set")
    keys = list(ratings)
    replicates = pd.DataFrame(
        np.repeat(np.array(keys, dtype=object), n_boot, axis=0), columns=list(key_columns)
    )
    replicates["replicate"] = np.tile(np.arange(n_boot), len(keys))
    replicates["S"] = np.concatenate(
        [_resampled_scores(ratings[key], indices[key[position]]) for key in keys]
    )
    return replicates


# ---------------------------------------------------------------- draws and training replicates


def condition_members(frame: pd.DataFrame, split) -> tuple[pd.Series, pd.Series]:
    """(the pooled condition of each row, which rows are members of a pool) under `split`
    (kinds.split_draw or kinds.split_replicate)."""
    parts = frame["condition"].map(split)
    return parts.map(lambda part: part[0]), parts.map(lambda part: part[1] is not None)


def _drawn(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    from polneurons.kinds import split_draw

    return condition_members(frame, split_draw)


def pool_draws(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The draws of each random control (condition <kind>-s<k>) as one row under <kind>.

    Every column outside `keys` and `condition` is averaged over the draws (a score, or a
    replicate's score: the bootstrap then gives the CI of the mean over draws); `draws` is
    their number (1 for a condition without draws). `keys` are the columns that identify a row
    apart from the condition (e.g. model, source, test_set, replicate).
    """
    base, drawn = _drawn(frame)
    by = ["condition", *keys]
    values = [c for c in frame.columns if c not in by]
    pooled = frame[drawn].assign(condition=base[drawn]).groupby(by, as_index=False, dropna=False)
    pooled = (
        pooled[values]
        .mean()
        .merge(pooled.size().rename(columns={"size": "draws"}), on=by, how="left")
    )
    return pd.concat([frame[~drawn].assign(draws=1), pooled], ignore_index=True)


def _spread(frame: pd.DataFrame, keys: Sequence[str], split) -> pd.DataFrame:
    base, member = condition_members(frame, split)
    by = ["condition", *keys]
    skip = {*by, "replicate", "draws", "seeds"}
    values = [c for c in frame.select_dtypes("number").columns if c not in skip]
    grouped = frame[member].assign(condition=base[member]).groupby(by, dropna=False)[values]
    return grouped.std(ddof=1).add_suffix("_sd").reset_index()


def draw_spread(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The spread over the draws of each random control: per <kind> and `keys`, the standard
    deviation (ddof 1; NaN for one draw) of every other numeric column, as <column>_sd."""
    from polneurons.kinds import split_draw

    return _spread(frame, keys, split_draw)


def seed_spread(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The spread over the training replicates (<kind>-t<k>) of each kind: per <kind> and
    `keys`, the standard deviation (ddof 1) of every other numeric column, as <column>_sd."""
    from polneurons.kinds import split_replicate

    return _spread(frame, keys, split_replicate)


def seed_weights(n_boot: int, n_seeds: int, seed: int) -> np.ndarray:
    """(n_boot, n_seeds) weights of the training replicates in each bootstrap replicate: the
    replicates resampled with replacement (multinomial counts / n_seeds; each row sums to 1).
    One stream per number of replicates, the same for every kind: replicate k of two kinds
    shares its seed (LoRA init, example order), so the resampling keeps them paired."""
    rng = np.random.default_rng([seed, 1, n_seeds])
    return rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot) / n_seeds


def pool_replicates(frame: pd.DataFrame, keys: Sequence[str], seed: int | None = None):
    """The training replicates of each kind (conditions <kind>-t<k>, kinds.seed_labels) as one
    row under <kind> (method.md: Training seeds); `seeds` is their number (absent when no
    condition has replicates, so a single-seed table is unchanged).

    Without a `replicate` column (the point estimate) every numeric column outside `keys` is
    the mean over the replicates. With one (bootstrap replicates, `seed` given) it is their
    weighted mean under `seed_weights`: each bootstrap replicate resamples the training
    replicates as well as the prompts, so the CI covers training noise (a crossed bootstrap
    over seeds and prompts). A value that is NaN in one replicate is NaN pooled.
    """
    from polneurons.kinds import split_replicate

    parts = frame["condition"].map(split_replicate)
    member = parts.map(lambda part: part[1] is not None)
    if not member.any():
        return frame
    part = frame[member].assign(
        condition=parts[member].map(lambda p: p[0]),
        _seed=parts[member].map(lambda p: p[1]).astype(int),
    )
    by = ["condition", *keys]
    values = [c for c in part.select_dtypes("number").columns if c not in {*by, "_seed"}]
    n_seeds = part.groupby("condition")["_seed"].transform("max").astype(int) + 1
    seen = part.groupby(by, dropna=False)["_seed"].agg(lambda s: sorted(s.tolist()))
    expected = part.assign(n=n_seeds).groupby(by, dropna=False)["n"].first()
    gaps = [key for key, got in seen.items() if got != list(range(expected[key]))]
    if gaps:
        raise DataError(
            f"training replicates missing or repeated for {gaps[:3]} (each kind needs -t0 .. "
            "-t<K-1> on every row it has)",
            "score every training replicate of a run on the same test sets",
        )
    if "replicate" in part.columns and seed is not None:
        n_boot = int(frame["replicate"].max()) + 1
        weight = np.empty(len(part))
        for k in n_seeds.unique():
            rows = (n_seeds == k).to_numpy()
            w = seed_weights(n_boot, int(k), seed)
            weight[rows] = w[part["replicate"].to_numpy()[rows], part["_seed"].to_numpy()[rows]]
    else:
        weight = 1 / n_seeds.to_numpy()
    weighted = part[values].mul(weight, axis=0).assign(**{c: part[c] for c in by})
    grouped = weighted.groupby(by, dropna=False)
    pooled = grouped[values].sum()
    pooled = pooled.mask(
        part[values]
        .isna()
        .assign(**{c: part[c] for c in by})
        .groupby(by, dropna=False)[values]
        .any()
    )
    pooled["seeds"] = part.assign(n=n_seeds).groupby(by, dropna=False)["n"].first()
    return pd.concat([frame[~member], pooled.reset_index()], ignore_index=True)


# ---------------------------------------------------------------- generalization (section 5)


def _replicate(frame: pd.DataFrame) -> list[str]:
    return ["replicate"] if "replicate" in frame.columns else []


def delta_matrix(scores: pd.DataFrame, base_condition: str = "base") -> pd.DataFrame:
    """Every non-base row of `scores` with S_base (the base model's S on its test set) and dS."""
    on = ["model", "test_set", *_replicate(scores)]
    is_base = scores["condition"] == base_condition
    base = scores.loc[is_base, [*on, "S"]].rename(columns={"S": "S_base"})
    if base.duplicated(on).any():
        raise DataError(
            "several base scores for one model and test set", "keep one base row per pair"
        )
    delta = scores.loc[~is_base].merge(base, on=on, how="left", indicator=True)
    missing = delta.loc[delta["_merge"] == "left_only", ["model", "test_set"]].drop_duplicates()
    if len(missing):
        raise DataError(
            f"no base score for {missing.to_records(index=False).tolist()[:3]}",
            f"score the base model (condition {base_condition!r}) on every test set",
        )
    delta = delta.drop(columns="_merge")
    delta["dS"] = _stance_delta(delta["S"], delta["S_base"])
    return delta


def topic_shift_and_cg(
    delta: pd.DataFrame,
    topics: Sequence[str],
    extra_sets: Sequence[str] = EXTRA_SETS,
    by: Sequence[str] = ARM_COLUMNS,
) -> pd.DataFrame:
    """Per arm (`by`, e.g. model, condition, source): TS, CG over the topics, and CG_<set> per extra set."""
    keys = [*by, *_replicate(delta)]
    wide = delta.set_index([*keys, "test_set"])["dS"].unstack("test_set")
    absent = [name for name in [*topics, *extra_sets] if name not in wide.columns]
    sources = wide.index.get_level_values("source")
    strays = sorted(set(sources) - set(topics))
    if absent or strays:
        raise DataError(
            f"test sets missing {absent}, source topics outside the topics {strays}",
            "evaluate every fine-tuned model on all topics and extra sets named in the config",
        )
    dS = wide[list(topics)].to_numpy()
    is_source = np.asarray(sources)[:, None] == np.asarray(topics)[None, :]
    # method.md: Generalization: TS(s) = dS(s -> s); CG(s) = mean over topics t != s of dS(s -> t)
    result = pd.DataFrame(
        {"TS": dS[is_source], "CG": dS[~is_source].reshape(len(dS), -1).mean(axis=1)},
        index=wide.index,
    )
    for name in extra_sets:
        result[f"CG_{name}"] = wide[
            name
        ]  # method.md: Generalization: CG also on pct and questionnaire
    return result.reset_index()


def reduction(cg_ft, cg_x) -> dict:
    """Reduction of cross-topic generalization by a mitigation X (scalars or arrays).

    The paper writes absolute = CG_FT(s) - CG_X(s) (method.md: Generalization), which is negative for a working
    mitigation of a left fine-tune (CG_FT < 0). Here both are measured towards the fine-tuning's
    direction, sign(CG_FT): absolute = sign(CG_FT) * (CG_FT - CG_X), relative = absolute /
    |CG_FT| (= 1 - CG_X / CG_FT, the paper's relative, for either sign). Positive: X moved CG back
    towards 0; 1 (relative): all of it. NaN where CG_FT = 0 (no direction to reduce).
    """
    cg_ft, cg_x = np.asarray(cg_ft, dtype=float), np.asarray(cg_x, dtype=float)
    direction = np.where(cg_ft == 0, np.nan, np.sign(cg_ft))
    with np.errstate(divide="ignore", invalid="ignore"):
        # method.md: Generalization, signed by the direction of the fine-tuning's shift
        absolute = direction * (cg_ft - cg_x)
        relative = np.divide(absolute, np.abs(cg_ft))
    if absolute.ndim == 0:
        return {"relative": float(relative), "absolute": float(absolute)}
    return {"relative": relative, "absolute": absolute}


def ts_kept(ts_ft, ts_x):
    """Share of the topic-specific shift a mitigation keeps (close to 1 is the goal)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(ts_x, ts_ft)  # method.md: Generalization: TS kept = TS_X(s) / TS_FT(s)


def mitigation_table(
    tscg: pd.DataFrame, x_conditions: Sequence[str], ft_condition: str = "ft"
) -> pd.DataFrame:
    """FT versus each mitigation X per (model, source), then averaged over sources (source "mean")
    and over sources and models (model "mean"): CG, TS, relative and absolute reduction, TS kept.
    `relative_of_means` (1 - mean CG_X / mean CG_FT) is a steadier companion of the mean of the
    per-source `relative` when some CG_FT(s) is near zero; per source the two coincide."""
    keys = ["model", "source", *_replicate(tscg)]
    ft = tscg.loc[tscg["condition"] == ft_condition, [*keys, "CG", "TS"]]
    # from pool_draws and pool_replicates
    carried = [c for c in ("draws", "seeds") if c in tscg.columns]
    rows = []
    for x in x_conditions:
        paired = ft.merge(
            tscg.loc[tscg["condition"] == x, [*keys, "CG", "TS", *carried]],
            on=keys,
            suffixes=("_ft", "_x"),
        )
        if paired.empty:
            raise DataError(
                f"no (model, source) has both {ft_condition!r} and {x!r}", "run both conditions"
            )
        paired = paired.assign(
            condition=x,
            **reduction(paired["CG_ft"], paired["CG_x"]),
            ts_kept=ts_kept(paired["TS_ft"], paired["TS_x"]),
        )
        # method.md: Generalization, InhibitFT: reductions averaged over source topics, then also over models
        per_model = paired.groupby(["model", "condition", *_replicate(tscg)], as_index=False).mean(
            numeric_only=True
        )
        overall = per_model.groupby(["condition", *_replicate(tscg)], as_index=False).mean(
            numeric_only=True
        )
        rows += [
            paired,
            per_model.assign(source="mean"),
            overall.assign(model="mean", source="mean"),
        ]
    columns = ["model", "condition", "source", *_replicate(tscg)]
    table = pd.concat(rows, ignore_index=True)
    table["relative_of_means"] = reduction(table["CG_ft"], table["CG_x"])["relative"]
    return table[columns + [c for c in table.columns if c not in columns]]


def attach_ci(
    point: pd.DataFrame, replicates: pd.DataFrame, keys: list[str], alpha: float
) -> pd.DataFrame:
    """point with <value>_lo and <value>_hi columns: percentile CIs of each value over replicates."""
    skip = {*keys, "replicate", "draws", "seeds"}
    values = [c for c in replicates.columns if c not in skip]
    grouped = replicates.groupby(keys, dropna=False)[values]
    low = grouped.quantile(alpha / 2).add_suffix("_lo")
    high = grouped.quantile(1 - alpha / 2).add_suffix("_hi")
    return point.merge(low.join(high).reset_index(), on=keys, how="left")


def paired_difference(
    frame: pd.DataFrame, pairs: Sequence[tuple[str, str]], keys: Sequence[str], values
) -> pd.DataFrame:
    """Per (treated, control) pair of conditions and per `keys` (with a `replicate` column, per
    replicate: a paired bootstrap of the difference): treated's `values` minus control's.

    >>> frame = pd.DataFrame({"condition": ["a", "b"], "model": "m", "v": [0.5, 0.2]})
    >>> paired_difference(frame, [("a", "b")], ["model"], ["v"]).round(3).to_dict("records")
    [{'model': 'm', 'v': 0.3, 'treated': 'a', 'control': 'b'}]
    """
    keys, values = list(keys), list(values)
    out = []
    for treated, control in pairs:
        a = frame.loc[frame["condition"] == treated, [*keys, *values]].set_index(keys)
        b = frame.loc[frame["condition"] == control, [*keys, *values]].set_index(keys)
        joined = a.merge(b, left_index=True, right_index=True, suffixes=("", "_control"))
        diff = pd.DataFrame({v: joined[v] - joined[f"{v}_control"] for v in values})
        out.append(diff.reset_index().assign(treated=treated, control=control))
    if out:
        return pd.concat(out, ignore_index=True)
    empty = {c: pd.Series(dtype=object) for c in (*keys, "treated", "control")}
    return pd.DataFrame({**empty, **{v: pd.Series(dtype=float) for v in values}})


def generalization_with_ci(
    ratings: Mapping[tuple, Sequence[str]],
    topics: Sequence[str],
    x_conditions: Sequence[str] = (),
    ft_condition: str = "ft",
    base_condition: str = "base",
    extra_sets: Sequence[str] = EXTRA_SETS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    controls: Sequence[tuple[str, str]] = (),
) -> dict[str, pd.DataFrame]:
    """From per-prompt ratings {(model, condition, source, test_set): [rating, ...]}:
    {"scores", "delta", "tscg", "mitigation"} tables, each value with _lo/_hi bootstrap CI columns
    ("mitigation" only when x_conditions are given), and "versus_random": each InhibitFT arm's
    reductions minus those of each of its controls that ran (`kinds.inhibitft_controls`: the
    random control and the null control, same strategy and n), CIs from the paired bootstrap
    (the same resampled prompts for both). With `controls` ((treated, control) conditions,
    e.g. ("ft", "null")), "tscg_versus": treated's TS and CG minus control's, paired CIs.

    In "mitigation" the draws of a random control (<kind>-s<k>) are one row under <kind>: the
    mean over draws (`draws` of them; its CI over prompts), and <value>_sd, the spread over
    draws (pool_draws, draw_spread). The other tables keep one row per draw.

    Training replicates (conditions <kind>-t<k>, kinds.seed_labels) are pooled in "delta",
    "tscg" and "mitigation" into one row under <kind> (pool_replicates): the mean over
    replicates, `seeds` of them, its CI from resampling replicates and prompts together, and
    in "delta" and "tscg" <value>_sd, the spread over replicates. "scores" keeps one row per
    replicate; an x_condition may be named with or without its replicate."""
    from polneurons.kinds import inhibitft_controls, split_draw, split_replicate

    x_trained = [x for x in dict.fromkeys(split_replicate(x)[0] for x in x_conditions)]
    x_trained = [x for x in x_trained if x != ft_condition]
    pooled_x = list(dict.fromkeys(split_draw(x)[0] for x in x_trained))
    pairs = [(x, c) for x in pooled_x for c in inhibitft_controls(x) if c in pooled_x]
    compared = ["CG_x", "relative", "absolute", "ts_kept"]

    def tables(scores: pd.DataFrame) -> dict[str, pd.DataFrame]:
        delta_per_seed = delta_matrix(scores, base_condition)
        tscg_per_seed = topic_shift_and_cg(delta_per_seed, topics, extra_sets)
        arm = ["model", "source", *_replicate(scores)]
        delta = pool_replicates(delta_per_seed, [*arm, "test_set"], seed)
        tscg = pool_replicates(tscg_per_seed, arm, seed)
        result = {"scores": scores, "delta": delta, "tscg": tscg}
        if controls:
            result["tscg_versus"] = paired_difference(tscg, controls, arm, ["TS", "CG"])
        if len(tscg) != len(tscg_per_seed):
            result["delta_sd"] = seed_spread(delta_per_seed, [*arm, "test_set"])
            result["tscg_sd"] = seed_spread(tscg_per_seed, arm)
        if x_trained:
            pooled = pool_draws(tscg, arm)
            result["mitigation"] = mitigation_table(pooled, pooled_x, ft_condition)
            result["versus_random"] = paired_difference(result["mitigation"], pairs, arm, compared)
        return result

    point = tables(scores_table(ratings))
    spreads = {name: point.pop(f"{name}_sd", None) for name in ("delta", "tscg")}
    replicates = tables(bootstrap_scores(ratings, n_boot=n_boot, seed=seed))
    for name in spreads:
        replicates.pop(f"{name}_sd", None)
    keys = {
        "scores": KEY_COLUMNS,
        "delta": KEY_COLUMNS,
        "tscg": ARM_COLUMNS,
        "mitigation": ARM_COLUMNS,
        "versus_random": ("treated", "control", "model", "source"),
        "tscg_versus": ("treated", "control", "model", "source"),
    }
    result = {
        name: attach_ci(point[name], replicates[name], list(keys[name]), alpha) for name in point
    }
    for name, spread in spreads.items():
        if spread is not None:
            on = [c for c in spread.columns if not c.endswith("_sd")]
            result[name] = result[name].merge(spread, on=on, how="left")
    if x_trained:
        spread = draw_spread(
            mitigation_table(point["tscg"], x_trained, ft_condition), ["model", "source"]
        )
        spread = spread[[c for c in spread.columns if not c.endswith("_ft_sd")]]
        result["mitigation"] = result["mitigation"].merge(
            spread, on=["condition", "model", "source"], how="left"
        )
    return result


# ---------------------------------------------------------------- judge-free stance (section 4)


def loglik_score_with_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """S_ll and its bootstrap CI over pairs, from loglik_stance's per-pair values."""
    values = np.asarray(values, dtype=float)
    low, high = bootstrap_ci(values, np.mean, n_boot, seed, alpha)
    # method.md: Stance: S_ll = mean over pairs of loglik_stance
    s_ll = float(values.mean()) if values.size else float("nan")
    return {"S_ll": s_ll, "ci_low": low, "ci_high": high, "n": int(values.size)}
