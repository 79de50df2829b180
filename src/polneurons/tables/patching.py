"""Activation patching tables (method.md: Activation patching): recovered shares, contrasts
with their controls, the dose-response curve, specificity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polneurons.io import read_jsonl
from polneurons.runs import run_of_path
from polneurons.tables.common import combine_reasons, interval_verdict, with_run_counts


def recovered_share(patch_shift, ft_shift):
    """(S_patch - S_M0) / (S_Ms - S_M0) (docs/method.md, "Activation patching"); undefined
    (NaN) where fine-tuning did not move S."""
    return (patch_shift / ft_shift.where(ft_shift != 0)).astype(float)


def patching_recovered(scores: pd.DataFrame, ceiling: str = "patch-all") -> pd.DataFrame:
    """Per (model, source, condition, test_set[, replicate]) of a scores table (conditions base,
    ft and patch-*): S, S_M0, S_Ms and the recovered share; also a pooled row per condition
    (test_set "all": the share of the summed shifts over its test sets). `recovered_vs_all` is
    each share over the share of the `ceiling` condition (every coordinate patched) of the same
    model, source and test set: NaN without that condition.

    >>> frame = pd.DataFrame({"model": "m", "source": ["-", "t", "t", "t"], "test_set": "a",
    ...     "condition": ["base", "ft", "patch-general", "patch-all"], "S": [0.0, 1.0, 0.4, 0.8]})
    >>> row = patching_recovered(frame).set_index(["condition", "test_set"]).loc["patch-general"]
    >>> row.loc["a", ["recovered", "recovered_vs_all"]].round(3).tolist()
    [0.4, 0.5]
    """
    rep = ["replicate"] if "replicate" in scores.columns else []
    base = scores[scores["condition"] == "base"][["model", "test_set", *rep, "S"]].rename(
        columns={"S": "S_M0"}
    )
    arms = scores[scores["condition"] != "base"].merge(base, on=["model", "test_set", *rep])
    ft = arms[arms["condition"] == "ft"][["model", "source", "test_set", *rep, "S"]].rename(
        columns={"S": "S_Ms"}
    )
    rows = arms.merge(ft, on=["model", "source", "test_set", *rep])
    rows["recovered"] = recovered_share(rows["S"] - rows["S_M0"], rows["S_Ms"] - rows["S_M0"])
    by, parts = ["model", "source", "condition", *rep], ["S", "S_M0", "S_Ms"]
    pooled = rows.groupby(by, as_index=False)[parts].sum()
    pooled["recovered"] = recovered_share(
        pooled["S"] - pooled["S_M0"], pooled["S_Ms"] - pooled["S_M0"]
    )
    # a sum over test sets with an undefined S among them is undefined too, not a sum of the
    # rest: the pooled share of each condition covers the same test sets, or none
    undefined = (
        rows[rows[parts].isna().any(axis=1)]
        .groupby(by)["test_set"]
        .agg(lambda sets: ", ".join(sorted(set(sets))))
        .rename("undefined_sets")
        .reset_index()
    )
    pooled = pooled.merge(undefined, on=by, how="left")
    pooled.loc[pooled["undefined_sets"].notna(), "recovered"] = float("nan")
    pooled["test_set"] = "all"
    pooled[["S", "S_M0", "S_Ms"]] = float("nan")
    table = pd.concat([rows, pooled], ignore_index=True)
    keys = ["model", "source", "test_set", *rep]
    top = table[table["condition"] == ceiling][[*keys, "recovered"]]
    table = table.merge(top.rename(columns={"recovered": "ceiling"}), on=keys, how="left")
    table["recovered_vs_all"] = recovered_share(table["recovered"], table["ceiling"])
    if "undefined_sets" not in table.columns:
        table["undefined_sets"] = None
    return table.drop(columns="ceiling")


PATCHING_CONTRASTS = (
    ("patch-general", "patch-random"),
    ("patch-general", "patch-null_general"),
    ("patch-general", "patch-complement"),
    ("patch-all", "patch-general"),
    # the teacher-forced readout's own control of S_t (neuron_store.specific_random)
    ("patch-specific", "patch-specific-random"),
)


def patching_pairs(conditions) -> list[tuple[str, str]]:
    """The (treated, control) pairs of PATCHING_CONTRASTS, then each dose of G (patch-dose<x>)
    against its random draws pooled (patch-dose<x>-random)."""
    from polneurons.kinds import random_counterpart

    conditions = list(dict.fromkeys(conditions))
    doses = [c for c in conditions if c.startswith("patch-dose") and random_counterpart(c)]
    return list(PATCHING_CONTRASTS) + [(c, random_counterpart(c)) for c in sorted(doses)]


def undefined_without_ci(table: pd.DataFrame, values) -> pd.DataFrame:
    """No CI where the value itself is undefined (bootstrap replicates that happen to be
    defined do not make an interval for an undefined figure)."""
    table = table.copy()
    for value in values:
        table.loc[table[value].isna(), [f"{value}_lo", f"{value}_hi"]] = float("nan")
    return table


def patching_contrasts(point: pd.DataFrame, replicates: pd.DataFrame, alpha: float):
    """Per (model, source), pooled over test sets: the recovered share of G minus that of the
    random set, of the complement of G, the ceiling (all) minus G, and each dose of G minus its
    random set (`patching_pairs`), from scores tables with the random draws pooled; the CIs come
    from the paired bootstrap replicates (the same resampled prompts for every condition).
    Pairs whose conditions did not run are left out."""
    from polneurons.metrics import attach_ci, paired_difference

    def pooled(scores):
        table = patching_recovered(scores)
        return table[table["test_set"] == "all"]

    pairs = patching_pairs(point["condition"])
    rep_keys = ["model", "source", "replicate"]
    point_diff = paired_difference(pooled(point), pairs, ["model", "source"], ["recovered"])
    reps = paired_difference(pooled(replicates), pairs, rep_keys, ["recovered"])
    table = attach_ci(point_diff, reps, ["treated", "control", "model", "source"], alpha)
    table = undefined_without_ci(table, ["recovered"])
    front = ["model", "source", "treated", "control"]
    return table[front + ["recovered", "recovered_lo", "recovered_hi"]].rename(
        columns={c: c.replace("recovered", "difference") for c in table.columns}
    )


PATCHING_COLUMNS = [
    "model",
    "leaning",
    "source",
    "condition",
    "test_set",
    "S_M0",
    "n_rated_M0",
    "S_Ms",
    "n_rated_Ms",
    "S",
    "n_rated",
    "S_lo",
    "S_hi",
    "recovered",
    "recovered_lo",
    "recovered_hi",
    "recovered_vs_all",
    "recovered_vs_all_lo",
    "recovered_vs_all_hi",
    "why_undefined",
    "draws",
    "S_sd",
    "recovered_sd",
]


def patching_leaning(ratings: dict, n_boot: int, seed: int, alpha: float):
    """The patching tables of one leaning (method.md: Activation patching), from its ratings as
    collect_ratings gives them (base, ft and patch-* conditions):

    - `table`: per (model, source, condition, test_set, and test_set "all" pooled) S, the
      recovered share and its share of the ceiling (`patching_recovered`), each with a CI over
      the bootstrap replicates; a random control's draws pooled (their mean; `draws`, and the
      spread over draws as S_sd and recovered_sd);
    - `contrasts`: `patching_contrasts`;
    - `bars`: S with its CI per (model, condition, source, test_set), the base model's rows
      repeated under each source (one panel per source in the bar chart).

    >>> L, R = "left leaning", "right leaning"
    >>> ratings = {("m", "base", "-", "a"): [L] * 4, ("m", "ft", "t", "a"): [R] * 4,
    ...     ("m", "patch-general", "t", "a"): [R, R, L, L]}
    >>> out = patching_leaning(ratings, n_boot=20, seed=0, alpha=0.1)
    >>> table = out["table"].set_index(["condition", "test_set"])
    >>> float(table.loc[("patch-general", "a"), "recovered"])
    0.5
    """
    from polneurons.metrics import (
        attach_ci,
        bootstrap_scores,
        draw_spread,
        pool_draws,
        scores_table,
    )

    keys = ["model", "source", "condition", "test_set"]
    per_draw = scores_table(ratings)
    point = pool_draws(per_draw, ["model", "source", "test_set"])
    reps = bootstrap_scores(ratings, n_boot=n_boot, seed=seed)
    reps = pool_draws(reps, ["model", "source", "test_set", "replicate"])
    measured = ["S", "recovered", "recovered_vs_all"]
    spread = draw_spread(patching_recovered(per_draw), ["model", "source", "test_set"])
    table = attach_ci(
        patching_recovered(point),
        patching_recovered(reps)[[*keys, "replicate", *measured]],
        keys,
        alpha,
    ).merge(spread[[*keys, "S_sd", "recovered_sd"]], on=keys, how="left")
    table = undefined_without_ci(table, measured)
    # the "all" rows of a condition have as many draws as its per-test-set rows
    table["draws"] = table.groupby(["model", "source", "condition"])["draws"].transform("max")
    contrasts = patching_contrasts(point, reps, alpha)
    point = attach_ci(point, reps[[*keys, "replicate", "S"]], keys, alpha)
    base = point[point["condition"] == "base"]
    bars = [
        pd.concat([base.assign(source=source), point[point["source"] == source]])
        for source in sorted(set(point["source"]) - {"-"})
    ]
    return dict(
        table=table,
        contrasts=contrasts,
        bars=pd.concat(bars, ignore_index=True) if bars else point.iloc[:0],
    )


def with_patching_counts(table: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The patching table with the rated answers beside each S (of M0, M_s and the condition);
    the pooled rows (test_set "all") sum them and have no S of their own. Rows of M_s itself
    (condition ft) are dropped; columns as PATCHING_COLUMNS, sorted."""
    table = with_run_counts(table, counts, "_M0", "base")
    table = with_run_counts(table, counts, "_Ms", "ft")
    table = combine_reasons(with_run_counts(table, counts), {"_M0": "M0", "_Ms": "M_s", "": ""})
    rated = ["n_rated_M0", "n_rated_Ms", "n_rated"]
    by = ["leaning", "model", "source", "condition"]
    pooled = table["test_set"] == "all"
    sums = table[~pooled].groupby(by)[rated].sum()
    table.loc[pooled, rated] = sums.loc[
        list(table.loc[pooled, by].itertuples(index=False))
    ].to_numpy()
    table.loc[pooled, "why_undefined"] = [
        f"pooled over test sets, S undefined in {sets}"
        if isinstance(sets, str)
        else "pooled (S per test set)"
        for sets in table.loc[pooled, "undefined_sets"]
    ]
    table[rated] = table[rated].astype("Int64")
    order = ["model", "leaning", "source", "condition", "test_set"]
    return table[table["condition"] != "ft"][PATCHING_COLUMNS].sort_values(order)


def patched_sizes(paths) -> dict:
    """{(model, leaning, source, condition): neurons patched} of each patching run, from its
    answers' `n_patched`; a random control's draws also under their pooled condition."""
    from polneurons.kinds import split_draw

    sizes = {}
    for path in paths:
        run = run_of_path(path)
        rows = read_jsonl(path) if run["condition"].startswith("patch-") else []
        if rows and "n_patched" in rows[0]:
            key = (run["model"], run["leaning"], run["source"])
            sizes[(*key, run["condition"])] = rows[0]["n_patched"]
            sizes[(*key, split_draw(run["condition"])[0])] = rows[0]["n_patched"]
    return sizes


def dose_curve(table: pd.DataFrame, sizes: dict) -> pd.DataFrame:
    """The dose-response of patching (method.md: Activation patching): per (model, leaning,
    source), the recovered share pooled over test sets (test_set "all", with its CI) of G's top
    x% (`patch-dose<x>`; G itself is x = 100) and of as many random neurons outside G (their
    draws pooled), and of G_null (`patch-null_general`, the null fine-tune's whole G), against
    the neurons patched (`sizes`: {(model, leaning, source, condition): neurons}, a random
    draw's pooled condition included); the ceiling (`patch-all`) has x NaN.

    >>> t = pd.DataFrame({"model": "m", "leaning": "r", "source": "s", "test_set": "all",
    ...     "condition": ["patch-dose30", "patch-general"], "recovered": [0.2, 0.5],
    ...     "recovered_lo": 0.0, "recovered_hi": 1.0})
    >>> sizes = {("m", "r", "s", "patch-dose30"): 30, ("m", "r", "s", "patch-general"): 100}
    >>> dose_curve(t, sizes)[["arm", "dose", "neurons", "recovered"]].values.tolist()
    [['G', 30.0, 30, 0.2], ['G', 100.0, 100, 0.5]]
    """
    from polneurons.kinds import parse_kind

    arms = {"patch-general": ("G", 100.0), "patch-random": ("random", 100.0)}
    arms |= {"patch-null_general": ("G_null", 100.0), "patch-all": ("all (ceiling)", float("nan"))}
    rows = []
    for row in table[table["test_set"] == "all"].itertuples(index=False):
        arm = arms.get(row.condition)
        if arm is None and row.condition.startswith("patch-dose"):
            kind = parse_kind(row.condition, pooled=True)
            arm = ("G" if kind.patched == "dose" else "random", kind.n)
        if arm is None:
            continue
        key = (row.model, row.leaning, row.source, row.condition)
        rows.append(
            dict(
                model=row.model,
                leaning=row.leaning,
                source=row.source,
                arm=arm[0],
                dose=arm[1],
                neurons=sizes.get(key),
                recovered=row.recovered,
                recovered_lo=row.recovered_lo,
                recovered_hi=row.recovered_hi,
                condition=row.condition,
            )
        )
    columns = ["model", "leaning", "source", "arm", "dose", "neurons", "recovered"]
    columns += ["recovered_lo", "recovered_hi", "condition"]
    curve = pd.DataFrame(rows, columns=columns)
    return curve.sort_values(["model", "leaning", "source", "arm", "dose"], ignore_index=True)


CROSSED = "patch-crossed"


def collect_crossed(paths) -> dict[str, dict[tuple, list[str]]]:
    """Per leaning, the ratings of the specificity runs (S_t patched on the other topics):
    {(model, source, patched topic t, test set t'): ratings in prompt order}."""
    by_leaning: dict[str, dict[tuple, list[str]]] = {}
    for path in paths:
        run = run_of_path(path)
        table = by_leaning.setdefault(run["leaning"], {})
        for row in read_jsonl(path):
            key = (run["model"], run["source"], row["patched_topic"], row["test_set"])
            table.setdefault(key, []).append(row["rating"])
    return by_leaning


def specificity(ratings: dict, crossed: dict, n_boot: int, seed: int, alpha: float):
    """Is S_t specific to t (method.md: Activation patching)? Per (model, source, topic t):

        on_t      = d * (S(M0 + S_t, t) - S(M0, t))                      (condition specific)
        on_others = d * mean over t' != t of (S(M0 + S_t, t') - S(M0, t'))  (condition crossed)
        difference = on_t - on_others

    with d = sign(S(M_s, t) - S(M0, t)), the direction fine-tuning moved t (so a specific S_t
    gives difference > 0 for either leaning), each with a CI from the paired bootstrap (the
    prompts of a test set resampled once for M0, M_s, specific and crossed). `ratings` as from
    collect_ratings (base, ft and patch-specific), `crossed` as from collect_crossed (one
    leaning each).
    """
    from polneurons.metrics import attach_ci, bootstrap_scores, scores_table

    joined = {k: v for k, v in ratings.items() if k[1] in ("base", "ft", "patch-specific")}
    for (model, source, topic, test_set), values in crossed.items():
        joined[(model, f"{CROSSED}:{topic}", source, test_set)] = values

    def rows(scores: pd.DataFrame) -> pd.DataFrame:
        rep = ["replicate"] if "replicate" in scores.columns else []
        base = scores[scores["condition"] == "base"].set_index(["model", "test_set", *rep])["S"]
        arms = scores[scores["condition"] != "base"].copy()
        index = pd.MultiIndex.from_frame(arms[["model", "test_set", *rep]])
        arms["shift"] = arms["S"].to_numpy() - base.reindex(index).to_numpy()
        own = arms[arms["condition"] == "patch-specific"].rename(columns={"shift": "on_t"})
        own = own.assign(topic=own["test_set"])[["model", "source", "topic", *rep, "on_t"]]
        other = arms[arms["condition"].str.startswith(f"{CROSSED}:")]
        other = other.assign(topic=other["condition"].str.split(":").str[1])
        others = (
            other.groupby(["model", "source", "topic", *rep], as_index=False)["shift"]
            .mean()
            .rename(columns={"shift": "on_others"})
        )
        ft = arms[arms["condition"] == "ft"].rename(columns={"shift": "ft_shift"})
        ft = ft.assign(topic=ft["test_set"])[["model", "source", "topic", *rep, "ft_shift"]]
        table = own.merge(others, on=["model", "source", "topic", *rep])
        return table.merge(ft, on=["model", "source", "topic", *rep], how="left")

    keys = ["model", "source", "topic"]
    point = rows(scores_table(joined))
    direction = np.sign(point.set_index(keys)["ft_shift"]).rename("direction")
    direction = direction.where(direction != 0)

    def signed(table: pd.DataFrame) -> pd.DataFrame:
        table = table.merge(direction.reset_index(), on=keys, how="left")
        table[["on_t", "on_others"]] = table[["on_t", "on_others"]].mul(table["direction"], axis=0)
        table["difference"] = table["on_t"] - table["on_others"]
        return table.drop(columns=["direction", "ft_shift"])

    point = signed(point)
    replicates = signed(rows(bootstrap_scores(joined, n_boot=n_boot, seed=seed)))
    table = attach_ci(point, replicates, keys, alpha)
    table["verdict"] = [
        interval_verdict(lo, hi)
        for lo, hi in zip(table["difference_lo"], table["difference_hi"], strict=True)
    ]
    return table
