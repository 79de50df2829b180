"""Stance tables (method.md: Stance, Generalization): the judge, generation health, the
judge-free log-likelihood shift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polneurons.io import read_json
from polneurons.tables.common import labelled_runs


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
    the same held-out pairs, with a bootstrap CI; plus rows TS_ll (topic = source) and CG_ll
    (the mean over the other topics of each topic's mean), whose CIs come from one bootstrap
    over pairs stratified by topic (`tables.readout.PairResampler`)."""
    from polneurons.metrics import bootstrap_ci
    from polneurons.tables.readout import PairResampler, percentile_ci

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
        pairs = {t: arm.loc[arm["topic"] == t, "pair"].to_numpy() for t in diffs}
        resample = PairResampler(pairs, n_boot, seed)
        ts, ts_boot, cg, cg_boot = resample.source_and_cross(diffs, source, others)
        for name, point, boot in (("TS_ll", ts, ts_boot), ("CG_ll", cg, cg_boot)):
            lo, hi = percentile_ci(point, boot, alpha) if boot is not None else (np.nan, np.nan)
            rows.append(dict(**key, topic=name, dS_ll=point, dS_ll_lo=lo, dS_ll_hi=hi))
    return pd.DataFrame(rows)


LOGLIK_VERSUS_COLUMNS = [
    "model", "leaning", "source", "treated", "control", "TS_ll_treated", "CG_ll_treated",
    "CG_ll_treated_lo", "CG_ll_treated_hi", "CG_ll_control", "TS_ll", "TS_ll_lo", "TS_ll_hi",
    "CG_ll", "CG_ll_lo", "CG_ll_hi",
]  # fmt: skip


def loglik_versus(
    frame: pd.DataFrame,
    shift: pd.DataFrame,
    topics,
    controls,
    n_boot: int,
    seed: int,
    alpha: float,
) -> pd.DataFrame:
    """TS_ll and CG_ll of each treated run minus its control's, without a judge (claim 1's
    control: `controls` as in `metrics.generalization_with_ci`, e.g. [("ft", "null")]). Both
    runs score the same held-out pairs, so the base model cancels: per pair, treated minus
    control; TS_ll and CG_ll of those differences as in `loglik_shift`, with CIs from one
    bootstrap over pairs stratified by topic (`tables.readout.PairResampler`, paired). Training
    replicate k of the treated kind is paired with replicate k of the control where the control
    has replicates, else with the control; each pairing is a row.

    >>> pairs = pd.DataFrame({"pair": [0, 1] * 2, "topic": ["a"] * 2 + ["b"] * 2})
    >>> frame = pd.concat([
    ...     pairs.assign(condition="base", value=0.0),
    ...     pairs.assign(condition="ft", value=[2.0, 2.0, 1.0, 3.0]),
    ...     pairs.assign(condition="null", value=1.0),
    ... ]).assign(model="m", leaning="right", source="a")
    >>> shift = loglik_shift(frame, ["a", "b"], 50, 0, 0.05)
    >>> row = loglik_versus(frame, shift, ["a", "b"], [("ft", "null")], 50, 0, 0.05).iloc[0]
    >>> [float(row[c]) for c in ("CG_ll_treated", "CG_ll_control", "TS_ll", "CG_ll")]
    [2.0, 1.0, 1.0, 1.0]
    """
    from polneurons.kinds import split_replicate
    from polneurons.tables.readout import PairResampler, percentile_ci

    rows = []
    runs = frame[frame["condition"] != "base"]
    for (model, lean, source), arm in runs.groupby(["model", "leaning", "source"]):
        scores = {
            condition: group.set_index(["topic", "pair"])["value"]
            for condition, group in arm.groupby("condition")
        }
        for treated_kind, control_kind in controls:
            for treated in sorted(scores):
                kind, replicate = split_replicate(treated)
                if kind != treated_kind:
                    continue
                replicated = f"{control_kind}-t{replicate}" if replicate is not None else None
                control = next((c for c in (replicated, control_kind) if c in scores), None)
                if control is None:
                    continue
                both = pd.concat([scores[treated], scores[control]], axis=1, join="inner")
                diff = (both.iloc[:, 0] - both.iloc[:, 1]).sort_index()
                per_topic = {
                    t: group.droplevel("topic") for t, group in diff.groupby(level="topic")
                }
                resample = PairResampler(
                    {t: d.index.to_numpy() for t, d in per_topic.items()}, n_boot, seed
                )
                values = {t: d.to_numpy(float) for t, d in per_topic.items()}
                others = [t for t in topics if t != source and t in values]
                ts, ts_boot, cg, cg_boot = resample.source_and_cross(values, source, others)
                row = dict(
                    model=model, leaning=lean, source=source, treated=treated, control=control
                )
                for name, point, boot in (("TS_ll", ts, ts_boot), ("CG_ll", cg, cg_boot)):
                    lo, hi = (
                        percentile_ci(point, boot, alpha) if boot is not None else (np.nan, np.nan)
                    )
                    row |= {name: point, f"{name}_lo": lo, f"{name}_hi": hi}
                rows.append(row)
    if not rows:
        return pd.DataFrame(columns=LOGLIK_VERSUS_COLUMNS)
    keys = ["model", "leaning", "source"]
    table = pd.DataFrame(rows, columns=[*keys, "treated", "control", *LOGLIK_VERSUS_COLUMNS[-6:]])
    arms = shift[shift["topic"].isin(["TS_ll", "CG_ll"])].pivot_table(
        index=[*keys, "condition"], columns="topic", values=["dS_ll", "dS_ll_lo", "dS_ll_hi"]
    )
    arms.columns = [f"{topic}{stat.removeprefix('dS_ll')}" for stat, topic in arms.columns]
    arms = arms.reset_index()
    for name in ("TS_ll", "CG_ll", "CG_ll_lo", "CG_ll_hi"):
        if name not in arms:
            arms[name] = np.nan
    return _with_arms(table, arms, "TS_ll", "CG_ll")[LOGLIK_VERSUS_COLUMNS]


def _with_arms(table: pd.DataFrame, arms: pd.DataFrame, ts: str, cg: str) -> pd.DataFrame:
    """A table of (treated, control) rows with the treated arm's own TS and CG (and CG's CI) and
    the control's CG beside each row, from `arms` (a row per model, leaning, source and
    condition, with columns ts, cg, cg_lo, cg_hi)."""
    keys = ["model", "leaning", "source"]
    treated = arms[[*keys, "condition", ts, cg, f"{cg}_lo", f"{cg}_hi"]].rename(
        columns={"condition": "treated", ts: f"{ts}_treated", cg: f"{cg}_treated",
                 f"{cg}_lo": f"{cg}_treated_lo", f"{cg}_hi": f"{cg}_treated_hi"}
    )  # fmt: skip
    control = arms[[*keys, "condition", cg]].rename(
        columns={"condition": "control", cg: f"{cg}_control"}
    )
    table = table.merge(treated, on=[*keys, "treated"], how="left")
    return table.merge(control, on=[*keys, "control"], how="left")


def judge_rows(
    backend: str,
    judge: str,
    ratings: list[str],
    agreement: dict | None = None,
    cached_answers: int | None = None,
    truncated: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """The judge table (method.md: Stance): which judge rated, what it returned over every
    answer of the workflow (`ratings`: one rating per answer, "error" included), the answers
    cached by the `openai` judge, and its agreement with GPT-4's labels where measured (the
    classifier judge: `agreement` as `ClassifierJudge.train` returns it, on whole held-out
    answers; per topic, kappa; and, per model, `truncated[model]` as
    `ClassifierJudge.truncated_agreement` returns it, on the same answers cut to the tokens a
    run generates). `no_stance` counts the held-out answers the judge rated neutral for want
    of a stance (its "no stance" class).

    >>> row = judge_rows("openai", "gpt-4o-mini", ["left leaning", "error"], cached_answers=2)
    >>> [int(row.iloc[0][key]) for key in ("n_answers", "left", "errors", "cached_answers")]
    [2, 1, 1, 2]
    """
    from polneurons.metrics import stance_counts

    counts = stance_counts(ratings)
    row = dict(
        scope="all",
        answers="whole",
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
        no_stance=np.nan,
        why_undefined="",
    )
    if agreement is None:
        row["why_undefined"] = (
            f"not measured: the {backend} judge is not rated on GPT-4-labelled answers here"
        )
        return pd.DataFrame([row])
    row |= {key: agreement[key] for key in ("accuracy", "kappa", "n_train", "n_test")}
    row["no_stance"] = agreement.get("n_no_stance", np.nan)
    cut = [
        dict(
            scope="all",
            answers=f"first {result['max_tokens']} tokens ({model})",
            backend=backend,
            judge=judge,
            accuracy=result["accuracy"],
            kappa=result["kappa"],
            n_test=result["n_test"],
            no_stance=result["n_no_stance"],
            why_undefined="",
        )
        for model, result in (truncated or {}).items()
    ]
    topics = [
        dict(scope=topic, answers="whole", backend=backend, judge=judge, kappa=kappa)
        for topic, kappa in agreement.get("kappa_by_topic", {}).items()
    ]
    frame = pd.DataFrame([row, *cut, *topics], columns=list(row))
    frame["why_undefined"] = frame["why_undefined"].fillna("")
    return frame


HEALTH_COLUMNS = ["n", "n_rated", "empty", "truncated", "repetitive", "echo", "judge_error"]


def collect_health(paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From health.json files: one row per run and test set (the shares, mean length, and the
    failure kinds flagged), and the sample answers of the flagged runs."""

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


VERSUS_NULL_COLUMNS = [
    "model", "leaning", "source", "treated", "control", "TS_treated", "CG_treated",
    "CG_treated_lo", "CG_treated_hi", "CG_control", "TS", "TS_lo", "TS_hi", "CG", "CG_lo", "CG_hi",
]  # fmt: skip


def versus_null(versus: list[pd.DataFrame], tscg: pd.DataFrame) -> pd.DataFrame:
    """The paired differences treated - control of TS and CG (generalization_with_ci's
    "tscg_versus", one frame per leaning) with each arm's own TS and CG beside them."""
    if not versus:
        return pd.DataFrame(columns=VERSUS_NULL_COLUMNS)
    table = pd.concat(versus, ignore_index=True)
    return _with_arms(table, tscg, "TS", "CG")[VERSUS_NULL_COLUMNS]
