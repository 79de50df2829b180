"""What every table shares: per-run files gathered by condition, counts and why a score
is undefined, the random-control draw table, and writing a table (CSV, Markdown, LaTeX)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polneurons.io import atomic_path, read_json, read_jsonl
from polneurons.kinds import seed_labels, split_replicate
from polneurons.runs import run_of_path


def labelled_runs(paths) -> list[tuple[str, dict]]:
    """(path, run_of_path) of each per-run file, the condition labelled by kinds.seed_labels:
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


def read_table(path) -> pd.DataFrame:
    """A table the workflow wrote (`write_table`), read back as written: an empty cell is NaN,
    but a text such as the run kind `null` (the null fine-tune) stays text (pandas' default
    reads "null", "NA" and "None" as missing)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


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


def interval_verdict(lo, hi, favourable: str = "above 0") -> str:
    """`holds` when the CI lies on the favourable side of 0, `reversed` when it lies on the
    other, `not shown` when it holds 0, `undefined` when there is no CI."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "undefined"
    sign = 1 if favourable == "above 0" else -1
    low, high = sorted((sign * lo, sign * hi))
    return "holds" if low > 0 else "reversed" if high < 0 else "not shown"


def leaning_sign_verdict(left: tuple, right: tuple) -> str:
    """Whether CG follows the leaning: `holds` when the left fine-tune's CI of CG lies below 0
    and the right one's above, `reversed` when both lie on the other side, `not shown`
    otherwise, `undefined` when either CI is missing."""
    verdicts = (interval_verdict(*left, "below 0"), interval_verdict(*right, "above 0"))
    if "undefined" in verdicts:
        return "undefined"
    if verdicts == ("holds", "holds"):
        return "holds"
    return "reversed" if verdicts == ("reversed", "reversed") else "not shown"


def depth_against_null_verdict(q25_g, q25_null, n_layers) -> str:
    """`holds` if G lies deep (lower-quartile layer >= n_layers / 3) and G_null does not,
    `fails` if G does not lie deep, `not shown` if both do (the depth is where fine-tuning as
    such acts), `undefined` without both quartiles.

    >>> [depth_against_null_verdict(g, n, 30) for g, n in ((20, 5), (5, 5), (20, 20))]
    ['holds', 'fails', 'not shown']
    """
    if pd.isna(q25_g) or pd.isna(q25_null):
        return "undefined"
    third = n_layers / 3
    if q25_g < third:
        return "fails"
    return "holds" if q25_null < third else "not shown"


def non_inferiority_verdict(lo, hi, margin: float) -> str:
    """`holds` if the CI [lo, hi] lies at or above `margin`, `fails` if it lies below it, `not
    shown` if it holds the margin (a CI too wide to tell), `undefined` without a CI.

    >>> [non_inferiority_verdict(*ci, 0.8) for ci in ((0.85, 1.1), (0.5, 0.7), (0.6, 1.2))]
    ['holds', 'fails', 'not shown']
    """
    if pd.isna(lo) or pd.isna(hi):
        return "undefined"
    if lo >= margin:
        return "holds"
    return "fails" if hi < margin else "not shown"
