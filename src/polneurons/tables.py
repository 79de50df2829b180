"""Gathering per-run outputs into the tables of METHOD 9 (CSV, Markdown, LaTeX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polneurons.io import atomic_path, read_json, read_jsonl


def parse_run(path: str | Path) -> dict:
    """{model, leaning, source, condition} of a per-run file or folder:
    <results>/<model>/base/<name> or <results>/<model>/<leaning>/<source>/<condition>/<name>."""
    parts = Path(path).parts
    if parts[-2] == "base":
        return {"model": parts[-3], "leaning": None, "source": None, "condition": "base"}
    model, leaning, source, condition = parts[-5:-1]
    return {"model": model, "leaning": leaning, "source": source, "condition": condition}


def collect_ratings(paths) -> dict[str, dict[tuple, list[str]]]:
    """Per leaning: {(model, condition, source, test_set): ratings in prompt order}. The base
    model's ratings join every leaning (its `source` is ignored by the metrics)."""
    by_leaning: dict[str, dict[tuple, list[str]]] = {}
    base = {}
    for path in paths:
        run = parse_run(path)
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


def collect_loglik(paths) -> pd.DataFrame:
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        for key, value in parse_run(path).items():
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
        run, report = parse_run(Path(path).parent), read_json(path)
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
) -> None:
    """One table in every format asked, atomically; floats rounded to 3 decimals for reading."""
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    shown = frame.round(3)
    if md:
        text = (f"# {title}\n\n" if title else "") + shown.to_markdown(index=False) + "\n"
        with atomic_path(md) as tmp:
            tmp.write_text(text)
    if tex:
        with atomic_path(tex) as tmp:
            tmp.write_text(shown.to_latex(index=False, float_format="%.3f", na_rep="--"))
