"""Gathering per-run outputs into the tables (CSV, Markdown, LaTeX) of method.md: Outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polneurons.io import atomic_path, read_json, read_jsonl
from polneurons.runs import run_of_path, seed_labels, split_replicate


def labelled_runs(paths) -> list[tuple[str, dict]]:
    """(path, run_of_path) of each per-run file, the condition labelled by runs.seed_labels:
    where a kind has further training replicates its replicate 0 reads <kind>-t0."""
    found = [(path, run_of_path(path)) for path in paths]
    labels = seed_labels(run["condition"] for _, run in found)
    return [(path, {**run, "condition": labels[run["condition"]]}) for path, run in found]


def collect_ratings(paths) -> dict[str, dict[tuple, list[str]]]:
    """Per leaning: {(model, condition, source, test_set): ratings in prompt order}. The base
    model's ratings join every leaning (its `source` is ignored by the metrics). Conditions are
    labelled as in `labelled_runs`."""
    by_leaning: dict[str, dict[tuple, list[str]]] = {}
    base = {}
    for path, run in labelled_runs(paths):
        rows = read_jsonl(path)
        sets: dict[str, list[str]] = {}
        for row in rows:
            sets.setdefault(row["test_set"], []).append(row["rating"])
        target = base if run["leaning"] is None else by_leaning.setdefault(run["leaning"], {})
        for test_set, ratings in sets.items():
            target[(run["model"], run["condition"], run["source"] or "-", test_set)] = ratings
    for table in by_leaning.values():
        table.update(base)
    return by_leaning


def collect_counts(paths) -> pd.DataFrame:
    """Per (leaning, model, condition, source, test_set): answers `n`, rated answers `n_rated`
    (S counts only those) and `why_undefined` (why S has no value; "" when it has one). The base
    model's rows join every leaning of the other runs, as in `collect_ratings`. The training
    replicates of a kind (<kind>-t<k>) also count together under <kind>, the row
    metrics.pool_replicates pools them into."""
    from polneurons.health import is_empty, undefined_reason
    from polneurons.metrics import stance_counts

    rows, base = [], []
    for path, run in labelled_runs(paths):
        sets: dict[str, list[dict]] = {}
        for row in read_jsonl(path):
            sets.setdefault(row["test_set"], []).append(row)
        for test_set, group in sets.items():
            counts = stance_counts([row["rating"] for row in group])
            n_rated = counts["n"] - counts["n_error"]
            n_empty = sum(is_empty(row["response"]) for row in group)
            record = dict(
                leaning=run["leaning"],
                model=run["model"],
                condition=run["condition"],
                source=run["source"] or "-",
                test_set=test_set,
                n=counts["n"],
                n_rated=n_rated,
                why_undefined=undefined_reason(counts["n"], n_rated, n_empty),
            )
            (base if run["leaning"] is None else rows).append(record)
    leanings = sorted({row["leaning"] for row in rows})
    rows += [{**row, "leaning": leaning} for leaning in leanings for row in base]
    counts = pd.DataFrame(rows, columns=[*COUNT_KEYS, "test_set", "n", "n_rated", "why_undefined"])
    pooled = _pooled_counts(counts)
    return pd.concat([counts, pooled], ignore_index=True) if len(pooled) else counts


def _pooled_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """The counts of the training replicates of each kind, summed under <kind> (reasons joined,
    each with its replicate)."""
    from polneurons.metrics import condition_members

    kind, member = condition_members(counts, split_replicate)
    pooled = counts[member].assign(
        condition=kind[member],
        why_undefined=[
            f"{condition}: {why}" if why else ""
            for condition, why in zip(
                counts.loc[member, "condition"], counts.loc[member, "why_undefined"], strict=True
            )
        ],
    )
    return pooled.groupby([*COUNT_KEYS, "test_set"], as_index=False, dropna=False).agg(
        n=("n", "sum"), n_rated=("n_rated", "sum"), why_undefined=("why_undefined", join_reasons)
    )


COUNT_KEYS = ["leaning", "model", "condition", "source"]


def join_reasons(reasons) -> str:
    """Distinct non-empty reasons, in order, joined into one cell (a reason that is itself a
    joined cell counts part by part, so no part repeats)."""
    return "; ".join(dict.fromkeys(part for r in reasons if r for part in r.split("; ")))


def _labelled(counts: pd.DataFrame) -> list[str]:
    """Each row's reason prefixed with its test set ("race: no rated answers: ..."), or ""."""
    return [
        f"{test_set}: {why}" if why else ""
        for test_set, why in zip(counts["test_set"], counts["why_undefined"], strict=True)
    ]


def arm_counts(counts: pd.DataFrame, base_condition: str = "base") -> pd.DataFrame:
    """Per arm (leaning, model, condition, source), and per (leaning, model, condition) with
    source "mean" and per (leaning, condition) with model and source "mean": rated answers over
    its test sets and runs, and why a shift of it is undefined (its test sets without a rated
    answer, and the base model's)."""
    counts = counts.assign(why_undefined=_labelled(counts))
    is_base = counts["condition"] == base_condition
    base_why = (
        counts[is_base]
        .groupby(["leaning", "model"])["why_undefined"]
        .agg(lambda r: join_reasons(f"base {x}" if x else "" for x in r))
        .rename("base_why")
        .reset_index()
    )
    runs = counts[~is_base].merge(base_why, on=["leaning", "model"], how="left")
    runs["why_undefined"] = [
        join_reasons([own, base if isinstance(base, str) else ""])
        for own, base in zip(runs["why_undefined"], runs["base_why"], strict=True)
    ]
    aggregate = dict(n_rated=("n_rated", "sum"), why_undefined=("why_undefined", join_reasons))
    arms = runs.groupby(COUNT_KEYS, as_index=False).agg(**aggregate)
    per_model = runs.groupby(["leaning", "model", "condition"], as_index=False).agg(**aggregate)
    overall = runs.groupby(["leaning", "condition"], as_index=False).agg(**aggregate)
    return pd.concat(
        [arms, per_model.assign(source="mean"), overall.assign(model="mean", source="mean")],
        ignore_index=True,
    )[[*COUNT_KEYS, "n_rated", "why_undefined"]]


def with_arm_counts(frame: pd.DataFrame, arms: pd.DataFrame, suffix: str = "", condition=None):
    """frame with n_rated<suffix> and why<suffix> of the arm on each row (the row's own
    condition, or `condition` for every row)."""
    keys = ["leaning", "model", "source"] + ([] if condition else ["condition"])
    chosen = arms if condition is None else arms[arms["condition"] == condition]
    chosen = chosen[[*keys, "n_rated", "why_undefined"]].rename(
        columns={"n_rated": f"n_rated{suffix}", "why_undefined": f"why{suffix}"}
    )
    merged = frame.merge(chosen, on=keys, how="left")
    merged[f"why{suffix}"] = merged[f"why{suffix}"].fillna("")
    return merged


def with_run_counts(frame: pd.DataFrame, counts: pd.DataFrame, suffix: str = "", condition=None):
    """frame (one row per test set) with n_rated<suffix> and why<suffix> of a run on that test
    set: the row's own run, or the run of `condition` ("base": the base model of the row's model)."""
    keys = ["leaning", "model", "test_set"]
    if condition is None:
        keys += ["condition", "source"]
        chosen = counts
    else:
        chosen = counts[counts["condition"] == condition]
        if condition != "base":
            keys.append("source")
    chosen = chosen[[*keys, "n_rated", "why_undefined"]].rename(
        columns={"n_rated": f"n_rated{suffix}", "why_undefined": f"why{suffix}"}
    )
    merged = frame.merge(chosen, on=keys, how="left")
    merged[f"why{suffix}"] = merged[f"why{suffix}"].fillna("")
    return merged


def combine_reasons(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """frame with one `why_undefined` column joining its why<suffix> columns (each reason
    prefixed with its label, e.g. {"_base": "base", "": ""}), those columns dropped."""
    columns = [f"why{suffix}" for suffix in labels]
    reasons = [
        join_reasons(
            f"{label} {why}".strip() if why else ""
            for label, why in zip(labels.values(), row, strict=True)
        )
        for row in frame[columns].itertuples(index=False)
    ]
    return frame.drop(columns=columns).assign(why_undefined=reasons)


def collect_loglik(paths) -> pd.DataFrame:
    """The per-pair log-likelihood stances of these runs, one frame (conditions labelled as in
    `labelled_runs`: each training replicate is its own condition)."""
    frames = []
    for path, run in labelled_runs(paths):
        frame = pd.read_csv(path)
        for key, value in run.items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def loglik_shift(frame: pd.DataFrame, topics, n_boot: int, seed: int, alpha: float) -> pd.DataFrame:
    """dS_ll per (model, leaning, source, condition, topic) against the base model, paired over
    the same held-out pairs, with a bootstrap CI; plus rows TS_ll (topic = source) and CG_ll."""
    from polneurons.metrics import bootstrap_ci

    base = (
        frame[frame["condition"] == "base"]
        .set_index(["model", "topic", "pair"])["value"]
        .sort_index()
    )
    rows = []
    for (model, lean, source, cond), arm in frame[frame["condition"] != "base"].groupby(
        ["model", "leaning", "source", "condition"]
    ):
        key = dict(model=model, leaning=lean, source=source, condition=cond)
        diffs = {}
        for topic, group in arm.groupby("topic"):
            d = (
                group["value"].to_numpy()
                - base.loc[[(model, topic, p) for p in group["pair"]]].to_numpy()
            )
            diffs[topic] = d
            lo, hi = bootstrap_ci(d, np.mean, n_boot, seed, alpha)
            rows.append(
                dict(
                    **key,
                    topic=topic,
                    S_ll_base=base.loc[model, topic].mean(),
                    S_ll=group["value"].mean(),
                    dS_ll=d.mean(),
                    dS_ll_lo=lo,
                    dS_ll_hi=hi,
                )
            )
        others = [t for t in topics if t != source and t in diffs]
        ts = diffs[source].mean() if source in diffs else np.nan
        cg = np.mean([diffs[t].mean() for t in others]) if others else np.nan
        rows += [dict(**key, topic="TS_ll", dS_ll=ts), dict(**key, topic="CG_ll", dS_ll=cg)]
    return pd.DataFrame(rows)


def control_table(report_paths) -> pd.DataFrame:
    """Per random-control draw and layer (layers the treated set or the draw touch): the treated
    count, the draw's count, the neurons it could not match in that layer (`unmatched`: too few
    neurons outside the treated set there) and those it took there instead (`spilled_in`), with
    the draw's overlap with the treated set (0 by construction). From random_control's reports."""
    rows = []
    for path in report_paths:
        run, report = run_of_path(Path(path).parent), read_json(path)
        per_layer = zip(
            report["treated_per_layer"],
            report["control_per_layer"],
            report["unmatched_per_layer"],
            report["spilled_in_per_layer"],
            strict=True,
        )
        for layer, (treated, drawn, unmatched, spilled) in enumerate(per_layer):
            if treated or drawn:
                rows.append(
                    {
                        **run,
                        "treated": report["treated"],
                        "draw": report["draw"],
                        "layer": layer,
                        "treated_count": treated,
                        "control_count": drawn,
                        "unmatched": unmatched,
                        "spilled_in": spilled,
                        "overlap_total": report["overlap"],
                        "unmatched_total": report["unmatched_total"],
                    }
                )
    return pd.DataFrame(rows)


def write_table(
    frame: pd.DataFrame,
    csv: str,
    md: str | None = None,
    tex: str | None = None,
    title: str | None = None,
    explain: tuple[str, ...] = (),
) -> None:
    """One table in every format asked, atomically; floats rounded to 3 decimals for reading.
    In Markdown and LaTeX, an undefined (NaN) cell of an `explain` column shows the row's
    `why_undefined` text instead (the CSV keeps NaN and the `why_undefined` column)."""
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    shown = explain_undefined(frame.round(3), explain)
    if md:
        text = (f"# {title}\n\n" if title else "") + shown.to_markdown(index=False) + "\n"
        with atomic_path(md) as tmp:
            tmp.write_text(text)
    if tex:
        with atomic_path(tex) as tmp:
            tmp.write_text(shown.to_latex(index=False, float_format="%.3f", na_rep="--"))


def judge_rows(
    backend: str,
    judge: str,
    ratings: list[str],
    agreement: dict | None = None,
    cached_answers: int | None = None,
) -> pd.DataFrame:
    """The judge table (method.md: Stance): which judge rated, what it returned over every
    answer of the workflow (`ratings`: one rating per answer, "error" included), the answers
    cached by the `openai` judge, and its agreement with GPT-4's labels where measured (the
    classifier judge: `agreement` as `ClassifierJudge.train` returns it; per topic, kappa).

    >>> row = judge_rows("openai", "gpt-4o-mini", ["left leaning", "error"], cached_answers=2)
    >>> [int(row.iloc[0][key]) for key in ("n_answers", "left", "errors", "cached_answers")]
    [2, 1, 1, 2]
    """
    from polneurons.metrics import stance_counts

    counts = stance_counts(ratings)
    row = dict(
        scope="all",
        backend=backend,
        judge=judge,
        n_answers=counts["n"],
        left=counts["n_left"],
        right=counts["n_right"],
        neutral=counts["n_neutral"],
        errors=counts["n_error"],
        cached_answers=cached_answers,
        accuracy=np.nan,
        kappa=np.nan,
        n_train=np.nan,
        n_test=np.nan,
        why_undefined="",
    )
    if agreement is None:
        row["why_undefined"] = (
            f"not measured: the {backend} judge is not rated on GPT-4-labelled answers here"
        )
        return pd.DataFrame([row])
    row |= {key: agreement[key] for key in ("accuracy", "kappa", "n_train", "n_test")}
    topics = [
        dict(scope=topic, backend=backend, judge=judge, kappa=kappa, why_undefined="")
        for topic, kappa in agreement.get("kappa_by_topic", {}).items()
    ]
    return pd.DataFrame([row, *topics], columns=list(row))


def explain_undefined(shown: pd.DataFrame, columns) -> pd.DataFrame:
    """`shown` without its `why_undefined` column, that text in the NaN cells of `columns`."""
    if "why_undefined" not in shown.columns:
        return shown
    why = shown["why_undefined"].fillna("").astype(str)
    shown = shown.drop(columns="why_undefined")
    for column in columns:
        missing = shown[column].isna() & (why != "")
        if missing.any():
            shown[column] = shown[column].astype(object)
            shown.loc[missing, column] = why[missing]
    return shown


HEALTH_COLUMNS = ["n", "n_rated", "empty", "truncated", "repetitive", "echo", "judge_error"]


def collect_health(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From health.json files: one row per run and test set (the shares, mean length, and the
    failure kinds flagged), and the sample answers of the flagged runs."""
    from polneurons.io import read_json

    rows, samples = [], []
    for path in paths:
        health = read_json(path)
        run = {"run": health["run"]}
        flagged: dict[str, list[str]] = {}
        for flag in health["flags"]:
            flagged.setdefault(flag["test_set"], []).append(flag["kind"])
        for record in health["sets"]:
            kinds = ",".join(flagged.get(record["test_set"], []))
            shares = {key: record[key] for key in [*HEALTH_COLUMNS, "mean_words"]}
            rows.append({**run, "test_set": record["test_set"], **shares, "flags": kinds})
        samples += [{"run": health["run"], **sample} for sample in health["samples"]]
    columns = ["run", "test_set", *HEALTH_COLUMNS, "mean_words", "flags"]
    sample_columns = ["run", "test_set", "id", "flags", "response"]
    return (
        pd.DataFrame(rows)[columns],
        pd.DataFrame(samples, columns=sample_columns),
    )


# ---------------------------------------------------------------- activation patching


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
    pooled = rows.groupby(["model", "source", "condition", *rep], as_index=False)[
        ["S", "S_M0", "S_Ms"]
    ].sum()
    pooled["recovered"] = recovered_share(
        pooled["S"] - pooled["S_M0"], pooled["S_Ms"] - pooled["S_M0"]
    )
    pooled["test_set"] = "all"
    pooled[["S", "S_M0", "S_Ms"]] = float("nan")
    table = pd.concat([rows, pooled], ignore_index=True)
    keys = ["model", "source", "test_set", *rep]
    top = table[table["condition"] == ceiling][[*keys, "recovered"]]
    table = table.merge(top.rename(columns={"recovered": "ceiling"}), on=keys, how="left")
    table["recovered_vs_all"] = recovered_share(table["recovered"], table["ceiling"])
    return table.drop(columns="ceiling")


PATCHING_CONTRASTS = (
    ("patch-general", "patch-random"),
    ("patch-general", "patch-null_general"),
    ("patch-general", "patch-complement"),
    ("patch-all", "patch-general"),
)


def patching_pairs(conditions) -> list[tuple[str, str]]:
    """The (treated, control) pairs of PATCHING_CONTRASTS, then each dose of G (patch-dose<x>)
    against its random draws pooled (patch-dose<x>-random)."""
    from polneurons.runs import random_counterpart

    conditions = list(dict.fromkeys(conditions))
    doses = [c for c in conditions if c.startswith("patch-dose") and random_counterpart(c)]
    return list(PATCHING_CONTRASTS) + [(c, random_counterpart(c)) for c in sorted(doses)]


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
    table.loc[pooled, "why_undefined"] = "pooled (S per test set)"
    table[rated] = table[rated].astype("Int64")
    order = ["model", "leaning", "source", "condition", "test_set"]
    return table[table["condition"] != "ft"][PATCHING_COLUMNS].sort_values(order)


def patched_sizes(paths) -> dict:
    """{(model, leaning, source, condition): neurons patched} of each patching run, from its
    answers' `n_patched`; a random control's draws also under their pooled condition."""
    from polneurons.runs import split_draw

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
    from polneurons.runs import parse_kind

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


# ---------------------------------------------------------------- neuron sets


def describe_set(neuron_set, total: int) -> dict:
    """Size, share of all `total` neurons, and the mean and quartile layers of a NeuronSet."""
    import torch

    layers = neuron_set.layers.float()
    quartiles = (
        layers.quantile(torch.tensor([0.25, 0.75])).tolist() if len(layers) else [None, None]
    )
    return {
        "size": len(neuron_set),
        "share_of_all": len(neuron_set) / total,
        "mean_layer": float(layers.mean()) if len(layers) else None,
        "layer_q25": quartiles[0],
        "layer_q75": quartiles[1],
    }


def neuron_set_rows(run: dict, summary: dict, general, specific: dict):
    """The rows of one localized run in the neuron-set table and the per-layer figure
    (method.md: PNLAC): a row per set (G as `general`, each S_t as `specific:<t>`) with its
    size, share of all neurons and layers (`describe_set`), G's with its stability (the
    bootstrap's mean recovered share and 95% interval, None where it was not run); and per set a
    per-layer histogram labelled with the run.

    `run` as from runs.run_of_path, `summary` as the run's neurons summary.json, `specific`:
    {topic: S_t}.
    """
    from polneurons.neurons import layer_histogram

    stability = summary.get("stability") or {}
    low, high = stability.get("recovered_share_ci95") or (None, None)
    total = general.n_layers * general.width
    key = {"model": run["model"], "leaning": run["leaning"], "source": run["source"]}
    key |= {"site": summary["site"], "k": summary["k"], "n_layers": general.n_layers}
    sets = {"general": general} | {f"specific:{t}": s_t for t, s_t in specific.items()}
    rows, histograms = [], []
    for name, neuron_set in sets.items():
        row = {**key, "set": name, **describe_set(neuron_set, total)}
        if name == "general":
            row |= {
                "stability_recovered": stability.get("recovered_share_mean"),
                "stability_lo": low,
                "stability_hi": high,
            }
        rows.append(row)
        histograms.append(
            layer_histogram(neuron_set).assign(
                model=run["model"],
                source=f"{run['source']} ({run['leaning']})",
                set=name.removeprefix("specific:"),
            )
        )
    return rows, histograms


def general_overlap(generals: dict) -> pd.DataFrame:
    """Jaccard of G between every two source topics of one (model, leaning); `generals` maps
    (model, leaning, source) to G."""
    import itertools

    from polneurons.neurons import jaccard

    rows = [
        {
            "model": a[0],
            "leaning": a[1],
            "source_a": a[2],
            "source_b": b[2],
            "jaccard": jaccard(generals[a], generals[b]),
        }
        for a, b in itertools.combinations(generals, 2)
        if a[:2] == b[:2]
    ]
    return pd.DataFrame(rows, columns=["model", "leaning", "source_a", "source_b", "jaccard"])


def null_overlap(generals: dict, nulls: dict, examples_from: dict) -> pd.DataFrame:
    """G against G_null, the general set of the null fine-tune (method.md: PNLAC), per (model,
    leaning, source): their sizes, shared neurons and Jaccard, and where the null run's neutral
    answers came from ("topic" or "pooled"). A Jaccard near 1 says G is what fine-tuning as
    such moves, not stance.

    >>> from polneurons.neurons import NeuronSet
    >>> g = NeuronSet([0, 0, 1], [0, 1, 0], [3.0, 2.0, 1.0], "mlp_output", 2, 2)
    >>> n = NeuronSet([0, 1], [1, 1], [1.0, 1.0], "mlp_output", 2, 2)
    >>> null_overlap({("m", "r", "s"): g}, {("m", "r", "s"): n}, {})[["shared", "jaccard"]].values.tolist()
    [[1.0, 0.25]]
    """
    import torch

    from polneurons.neurons import jaccard

    columns = ["model", "leaning", "source", "size_G", "size_G_null", "shared", "jaccard"]
    rows = []
    for key, null in nulls.items():
        general = generals[key]
        shared = int(torch.isin(general.flat, null.flat).sum())
        values = [len(general), len(null), shared, jaccard(general, null)]
        rows.append(dict(zip(columns, [*key, *values], strict=True)))
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(null_examples=[examples_from.get(k, "") for k in nulls])


# ---------------------------------------------------------------- InhibitFT


def loglik_summary(loglik: pd.DataFrame) -> pd.DataFrame:
    """TS_ll and CG_ll per (model, leaning, source, condition) from `loglik_shift`'s long
    table, the draws of each random control pooled (mean, `draws`, `_sd` over draws)."""
    from polneurons.metrics import draw_spread, pool_draws

    summary = (
        loglik[loglik["topic"].isin(["TS_ll", "CG_ll"])]
        .pivot_table(
            index=["model", "leaning", "source", "condition"], columns="topic", values="dS_ll"
        )
        .reset_index()
        .rename_axis(columns=None)
    )
    # the draws are pooled within each training replicate (<draw kind>-t<k>)
    parts = summary["condition"].map(split_replicate)
    summary = summary.assign(
        condition=[kind for kind, _ in parts],
        training=["" if k is None else f"-t{k}" for _, k in parts],
    )
    keys = ["model", "leaning", "source", "training"]
    pooled = pool_draws(summary, keys).merge(
        draw_spread(summary, keys), on=["condition", *keys], how="left"
    )
    return pooled.assign(condition=pooled["condition"] + pooled["training"]).drop(
        columns="training"
    )


def ablation_curve(main: pd.DataFrame, control: str) -> pd.DataFrame:
    """The points of the ablation figure from the InhibitFT main table: per model (source
    "mean"), CG and TS of each InhibitFT, null-control and random arm against n, with CIs, and the vanilla
    control's value (n NaN: a horizontal line)."""
    from polneurons.runs import parse_kind

    curve = []
    per_model = main[(main["source"] == "mean") & (main["model"] != "mean")]
    for _, row in per_model.iterrows():
        kind = parse_kind(row["condition"], pooled=True)
        arm = {"ift": "InhibitFT", "nift": "InhibitFT on G_null", "rnd": "random"}[kind.family]
        label = f"{arm} ({kind.strategy})"
        for metric in ("CG", "TS"):
            curve.append(
                {
                    "model": row["model"],
                    "condition": label,
                    "n": kind.n,
                    "metric": metric,
                    "value": row[f"{metric}_x"],
                    "lo": row[f"{metric}_x_lo"],
                    "hi": row[f"{metric}_x_hi"],
                }
            )
    for (model,), group in per_model.groupby(["model"]):
        for metric in ("CG", "TS"):
            curve.append(
                {
                    "model": model,
                    "condition": f"vanilla ({control})",
                    "n": float("nan"),
                    "metric": metric,
                    "value": group[f"{metric}_ft"].iloc[0],
                }
            )
    return pd.DataFrame(curve)


# ---------------------------------------------------------------- claims (method.md: The claims under test)

CLAIM_COLUMNS = [
    "claim", "model", "leaning", "source", "measured", "measured_lo", "measured_hi",
    "control", "control_value", "difference", "difference_lo", "difference_hi", "rule", "verdict",
]  # fmt: skip


def interval_verdict(lo, hi, favourable: str = "above 0") -> str:
    """`holds` when the CI lies on the favourable side of 0, `reversed` when it lies on the
    other, `not shown` when it holds 0, `undefined` when there is no CI."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "undefined"
    sign = 1 if favourable == "above 0" else -1
    low, high = sorted((sign * lo, sign * hi))
    return "holds" if low > 0 else "reversed" if high < 0 else "not shown"


def _claim(claim, row, measured, control="", control_value=None, diff=None, rule="", verdict=""):
    value, lo, hi = measured
    d, d_lo, d_hi = diff if diff is not None else (None, None, None)
    return dict(
        claim=claim, model=row["model"], leaning=row["leaning"], source=row["source"],
        measured=value, measured_lo=lo, measured_hi=hi, control=control,
        control_value=control_value, difference=d, difference_lo=d_lo, difference_hi=d_hi,
        rule=rule, verdict=verdict,
    )  # fmt: skip


def _dose_label(kind: str) -> str:
    from polneurons.runs import format_n, parse_kind

    return f"the top {format_n(parse_kind(kind).n)}% of G"


def claims_table(
    tscg: pd.DataFrame,
    neuron_sets: pd.DataFrame | None = None,
    patching: pd.DataFrame | None = None,
    contrasts: pd.DataFrame | None = None,
    inhibitft: pd.DataFrame | None = None,
    versus: pd.DataFrame | None = None,
    headline_n: float = 5,
    specific: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each claim of the paper (docs/method.md, "The claims under test") per fine-tuned run:
    the measured figure with its CI, the control's figure, their paired difference, the rule
    the verdict follows and the verdict (`interval_verdict`), from the tables of the run.
    Claims whose stage did not run are left out."""
    rows = []
    for _, r in tscg.iterrows():
        direction = "above 0" if r["TS"] >= 0 else "below 0"
        rows.append(
            _claim(
                "1: fine-tuning on one topic shifts the others (CG)",
                r,
                (r["CG"], r["CG_lo"], r["CG_hi"]),
                rule="holds if the CI of CG excludes 0 on the side of TS",
                verdict=interval_verdict(r["CG_lo"], r["CG_hi"], direction),
            )
        )
    if neuron_sets is not None:
        general = neuron_sets[neuron_sets["set"] == "general"]
        for _, r in general.iterrows():
            third = r["n_layers"] / 3
            q25 = r["layer_q25"]
            rows.append(
                _claim(
                    "2: G sits in middle and late layers (lower-quartile layer of G)",
                    r,
                    (q25, None, None),
                    rule=f"holds if G's lower-quartile layer is >= n_layers / 3 ({third:g})",
                    verdict="undefined" if pd.isna(q25) else "holds" if q25 >= third else "fails",
                )
            )
    if patching is not None:
        pooled = patching[patching["test_set"] == "all"]
        for _, r in pooled[pooled["condition"] == "patch-specific"].iterrows():
            rows.append(
                _claim(
                    "2: S_t patched on its own topic recovers part of the shift",
                    r,
                    (r["recovered"], r["recovered_lo"], r["recovered_hi"]),
                    rule="holds if the CI of the recovered share lies above 0",
                    verdict=interval_verdict(r["recovered_lo"], r["recovered_hi"]),
                )
            )
    if patching is not None and contrasts is not None:
        pooled = patching[patching["test_set"] == "all"].set_index(["model", "leaning", "source"])
        of_g = contrasts["treated"].eq("patch-general") | contrasts["treated"].str.startswith(
            "patch-dose"
        )
        for _, c in contrasts[of_g].iterrows():
            key = (c["model"], c["leaning"], c["source"])
            arms = pooled.loc[[key]].set_index("condition")
            g, ctl = arms.loc[c["treated"]], arms.loc[c["control"]]
            treated = "G" if c["treated"] == "patch-general" else _dose_label(c["treated"])
            rows.append(
                _claim(
                    f"2: {treated} recovers more of the shift than "
                    f"{c['control'].removeprefix('patch-')}",
                    c,
                    (g["recovered"], g["recovered_lo"], g["recovered_hi"]),
                    control=c["control"],
                    control_value=ctl["recovered"],
                    diff=(c["difference"], c["difference_lo"], c["difference_hi"]),
                    rule="holds if the paired CI of G minus the control lies above 0",
                    verdict=interval_verdict(c["difference_lo"], c["difference_hi"]),
                )
            )
    if specific is not None:
        for _, r in specific.iterrows():
            rows.append(
                _claim(
                    f"2: S_t of {r['topic']} moves {r['topic']} more than the other topics",
                    r,
                    (r["on_t"], r["on_t_lo"], r["on_t_hi"]),
                    control="S_t on the other topics",
                    control_value=r["on_others"],
                    diff=(r["difference"], r["difference_lo"], r["difference_hi"]),
                    rule="holds if the paired CI of the shift on t minus the mean shift on the "
                    "other topics lies above 0",
                    verdict=r["verdict"],
                )
            )
    if inhibitft is not None:
        from polneurons.runs import inhibitft_controls, parse_kind

        def at_headline(frame, column):
            kinds = frame[column].map(lambda k: parse_kind(k, pooled=True))
            return frame[kinds.map(lambda k: k.family == "ift" and k.n == headline_n)]

        runs = inhibitft[inhibitft["source"] != "mean"]
        paired = (
            versus.set_index(["model", "leaning", "source", "treated", "control"])
            if versus is not None
            else None
        )
        for _, r in at_headline(runs, "condition").iterrows():
            random, null = inhibitft_controls(r["condition"])
            key = (r["model"], r["leaning"], r["source"], r["condition"], random)
            has_control = paired is not None and key in paired.index
            d = paired.loc[key] if has_control else None
            cut = interval_verdict(r["relative_lo"], r["relative_hi"])
            beats = (
                interval_verdict(d["relative_lo"], d["relative_hi"]) if has_control else "undefined"
            )
            rows.append(
                _claim(
                    f"3: InhibitFT at n = {headline_n:g} cuts CG (relative reduction; paper ~0.2)",
                    r,
                    (r["relative"], r["relative_lo"], r["relative_hi"]),
                    control=random if has_control else "",
                    control_value=(r["relative"] - d["relative"]) if has_control else None,
                    diff=(d["relative"], d["relative_lo"], d["relative_hi"])
                    if has_control
                    else None,
                    rule="holds if the CI of the reduction and the paired CI of InhibitFT minus "
                    "random both lie above 0",
                    verdict="holds"
                    if cut == beats == "holds"
                    else cut
                    if cut != "holds"
                    else beats,
                )
            )
            null_key = (*key[:4], null)
            if paired is not None and null_key in paired.index:
                d = paired.loc[null_key]
                rows.append(
                    _claim(
                        f"3: InhibitFT at n = {headline_n:g} on G cuts CG more than on G_null",
                        r,
                        (r["relative"], r["relative_lo"], r["relative_hi"]),
                        control=null,
                        control_value=r["relative"] - d["relative"],
                        diff=(d["relative"], d["relative_lo"], d["relative_hi"]),
                        rule="holds if the paired CI of InhibitFT minus the null control lies "
                        "above 0",
                        verdict=interval_verdict(d["relative_lo"], d["relative_hi"]),
                    )
                )
            rows.append(
                _claim(
                    f"3: InhibitFT at n = {headline_n:g} keeps TS (TS_X / TS_FT)",
                    r,
                    (r["ts_kept"], r["ts_kept_lo"], r["ts_kept_hi"]),
                    rule="holds if the CI of TS kept reaches 1 (no loss of TS shown)",
                    verdict="undefined"
                    if pd.isna(r["ts_kept_hi"])
                    else "holds"
                    if r["ts_kept_hi"] >= 1
                    else "fails",
                )
            )
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---------------------------------------------------------------- training


def training_steps(train_dirs) -> pd.DataFrame:
    """Per optimizer step of every trained run (a `<run>/train` folder): model, leaning, source,
    condition, step, epoch, loss, lr, tokens, seconds (from its train_log.json)."""
    rows = []
    for folder in train_dirs:
        run = run_of_path(folder)  # <results>/<model>/<leaning>/<source>/<kind>/train
        rows += [{**run, **step} for step in read_json(Path(folder) / "train_log.json")["steps"]]
    return pd.DataFrame(rows)


def training_summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Per trained run: steps, and the loss of its first and last step. (The seconds are in
    each train_log.json: wall time is no result, and the table stays byte-identical across runs.)

    >>> steps = pd.DataFrame({"model": "m", "leaning": "right", "source": "a", "condition":
    ...     "ft", "step": [1, 2, 3], "loss": [3.0, 2.5, 2.0], "seconds": [1.0, 2.0, 3.5]})
    >>> training_summary(steps)[["steps", "first_loss", "final_loss"]].values.tolist()
    [[3.0, 3.0, 2.0]]
    """
    keys = ["model", "leaning", "source", "condition"]
    ordered = steps.sort_values([*keys, "step"])
    return ordered.groupby(keys, as_index=False).agg(
        steps=("step", "max"), first_loss=("loss", "first"), final_loss=("loss", "last")
    )


def inhibition_effect(r_run, r_vanilla, inhibited, general) -> list[dict]:
    """How far each set of neurons moved from M0 in a run (`r_run`, the RMS contrast of the run
    against M0 on its source topic, [n_layers, width]) against the vanilla run (`r_vanilla`):
    per set (the inhibited neurons, G without them, every other neuron) the mean contrast of
    each run and their ratio, "moved x of what it moved under vanilla FT" (method.md: InhibitFT).

    >>> import torch
    >>> from polneurons.neurons import NeuronSet
    >>> g = NeuronSet([0, 0], [0, 1], [1.0, 1.0], "s", 1, 4)
    >>> f = NeuronSet([0], [0], [1.0], "s", 1, 4)
    >>> rows = inhibition_effect(torch.tensor([[0.5, 2.0, 1.0, 1.0]]), torch.tensor([[2.0] * 4]), f, g)
    >>> [(r["set"], r["n_neurons"], r["moved_share"]) for r in rows]
    [('inhibited', 1, 0.25), ('G without the inhibited', 1, 1.0), ('all other neurons', 2, 0.5)]
    """
    inhibited_mask = inhibited.as_mask()
    sets = {
        "inhibited": inhibited_mask,
        "G without the inhibited": general.as_mask() & ~inhibited_mask,
        "all other neurons": ~(general.as_mask() | inhibited_mask),
    }
    rows = []
    for name, mask in sets.items():
        n = int(mask.sum())
        run = float(r_run[mask].float().mean()) if n else float("nan")
        vanilla = float(r_vanilla[mask].float().mean()) if n else float("nan")
        share = run / vanilla if n and vanilla > 0 else float("nan")
        rows.append(
            {
                "set": name,
                "n_neurons": n,
                "moved": run,
                "moved_vanilla": vanilla,
                "moved_share": share,
            }
        )
    return rows
