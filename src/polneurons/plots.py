"""The figures of method.md: Outputs, each written as PNG and PDF."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, png: str, pdf: str) -> None:
    from polneurons.io import atomic_path

    fig.tight_layout()
    for path in (png, pdf):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.rsplit(".", 1)[1], dpi=150)
    plt.close(fig)


def _yerr(value, lo, hi) -> np.ndarray:
    """Error bar lengths below and above each point from its CI: none where the CI is
    undefined, and none below 0 (a percentile CI, of a ratio above all, may miss its point)."""
    err = np.array([np.asarray(value) - np.asarray(lo), np.asarray(hi) - np.asarray(value)])
    return np.clip(np.nan_to_num(err.astype(float)), 0, None)


def stance_heatmap(delta: pd.DataFrame, test_sets: list[str], png: str, pdf: str) -> None:
    """dS(s -> t): source topic x test set, one panel per model (columns model, source, test_set,
    dS; with several leanings, column leaning: a row per leaning and source)."""
    import seaborn as sns

    if "leaning" in delta and delta["leaning"].nunique() > 1:
        delta = delta.assign(source=delta["leaning"] + ": " + delta["source"])

    models = list(dict.fromkeys(delta["model"]))
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(1.1 * len(test_sets) * len(models) + 2, 0.6 * delta["source"].nunique() + 2.5),
        squeeze=False,
    )
    vmax = max(float(np.nanmax(np.abs(delta["dS"]))), 0.05) if len(delta) else 1
    for ax, model in zip(axes[0], models, strict=True):
        grid = delta[delta["model"] == model].pivot(index="source", columns="test_set", values="dS")
        grid = grid.reindex(columns=[t for t in test_sets if t in grid.columns])
        sns.heatmap(
            grid,
            ax=ax,
            cmap="RdBu_r",
            center=0,
            vmin=-vmax,
            vmax=vmax,
            annot=True,
            fmt=".2f",
            cbar_kws={"label": "dS (+ = right)"},
        )
        ax.set_title(model)
        ax.set_xlabel("test set")
        ax.set_ylabel("fine-tuned on")
        ax.tick_params(axis="x", rotation=45)
        ax.tick_params(axis="y", rotation=0)
    _save(fig, png, pdf)


def neurons_per_layer(counts: pd.DataFrame, png: str, pdf: str) -> None:
    """Neurons per layer of G and each S_t (columns model, source, set, layer, count)."""
    panels = list(dict.fromkeys(zip(counts["model"], counts["source"], strict=True)))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.8 * len(panels)), squeeze=False)
    for ax, (model, source) in zip(axes[:, 0], panels, strict=True):
        sub = counts[(counts["model"] == model) & (counts["source"] == source)]
        for name, group in sub.groupby("set", sort=False):
            style = dict(lw=2.5, color="black") if name == "general" else dict(lw=1, alpha=0.8)
            ax.plot(group["layer"], group["count"], marker="o", ms=3, label=name, **style)
        ax.set_title(f"{model}: fine-tuned on {source}")
        ax.set_xlabel("layer")
        ax.set_ylabel("neurons")
        ax.legend(fontsize=7, ncol=4)
    _save(fig, png, pdf)


def patching_bars(scores: pd.DataFrame, conditions: list[str], png: str, pdf: str) -> None:
    """S per test set for each condition with CIs (columns model, source, condition, test_set, S, S_lo, S_hi)."""
    panels = list(dict.fromkeys(zip(scores["model"], scores["source"], strict=True)))
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for ax, (model, source) in zip(axes[:, 0], panels, strict=True):
        sub = scores[(scores["model"] == model) & (scores["source"] == source)]
        test_sets = list(dict.fromkeys(sub["test_set"]))
        width = 0.8 / len(conditions)
        for i, cond in enumerate(conditions):
            c = sub[sub["condition"] == cond].set_index("test_set").reindex(test_sets)
            x = np.arange(len(test_sets)) + i * width
            ax.bar(
                x, c["S"], width, yerr=_yerr(c["S"], c["S_lo"], c["S_hi"]), capsize=2, label=cond
            )
        ax.set_xticks(
            np.arange(len(test_sets)) + 0.4 - width / 2, test_sets, rotation=30, ha="right"
        )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("S (+ = right)")
        ax.set_title(f"{model}: patching from the model fine-tuned on {source}")
        ax.legend(fontsize=7, ncol=len(conditions))
    _save(fig, png, pdf)


def ablation(curve: pd.DataFrame, png: str, pdf: str) -> None:
    """CG and TS against n (columns model, condition, n, metric, value, lo, hi); n = NaN for the
    vanilla control, drawn as a horizontal line."""
    models = list(dict.fromkeys(curve["model"]))
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.2 * len(models)), squeeze=False)
    for row, model in zip(axes, models, strict=True):
        for ax, metric in zip(row, ["CG", "TS"], strict=True):
            sub = curve[(curve["model"] == model) & (curve["metric"] == metric)]
            for cond, group in sub.groupby("condition", sort=False):
                if group["n"].isna().all():
                    ax.axhline(group["value"].iloc[0], ls="--", color="black", label=cond)
                    continue
                group = group.sort_values("n")
                ax.errorbar(
                    group["n"],
                    group["value"],
                    yerr=_yerr(group["value"], group["lo"], group["hi"]),
                    marker="o",
                    capsize=3,
                    label=cond,
                )
            ax.set_xlabel("n (% of general neurons inhibited)")
            ax.set_ylabel(metric)
            ax.set_title(f"{model}: {metric}")
            ax.legend(fontsize=7)
    _save(fig, png, pdf)


def dose_response(curve: pd.DataFrame, png: str, pdf: str, value: str = "recovered") -> None:
    """The `value` share against neurons patched (columns of tables.patching.dose_curve, or of
    tables.readout.dose_curves with value "share"): G's top x%, random neurons outside G and
    G_null with CIs, one column of panels per (model, leaning, source) and, with a `readout`
    column, one row per readout; the ceiling (every coordinate patched) as a dashed line."""
    panels = list(
        dict.fromkeys(zip(curve["model"], curve["leaning"], curve["source"], strict=True))
    )
    readouts = list(dict.fromkeys(curve["readout"])) if "readout" in curve else [None]
    cols, n_rows = max(len(panels), 1), max(len(readouts), 1)
    fig, axes = plt.subplots(n_rows, cols, figsize=(5 * cols, 3.6 * n_rows), squeeze=False)
    for row, readout in enumerate(readouts):
        rows = curve if readout is None else curve[curve["readout"] == readout]
        for ax, (model, leaning, source) in zip(axes[row], panels, strict=False):
            sub = rows[
                (rows["model"] == model) & (rows["leaning"] == leaning) & (rows["source"] == source)
            ]
            for arm, group in sub.groupby("arm", sort=True):
                if group["dose"].isna().all():
                    ax.axhline(group[value].iloc[0], ls="--", color="black", label=arm)
                    continue
                group = group.sort_values("neurons")
                ax.errorbar(
                    group["neurons"],
                    group[value],
                    yerr=_yerr(group[value], group[f"{value}_lo"], group[f"{value}_hi"]),
                    marker="o",
                    capsize=3,
                    label=arm,
                )
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel("neurons patched")
            ax.set_ylabel(
                "recovered share of the FT shift"
                if readout is None
                else f"share of the FT shift\n({readout})"
            )
            ax.set_title(f"{model}: {leaning} FT on {source}")
            ax.legend(fontsize=7)
    _save(fig, png, pdf)


def training_loss(steps: pd.DataFrame, png: str, pdf: str) -> None:
    """Training loss per optimizer step of every trained run (columns model, leaning, source,
    condition, step, loss): one panel per (model, leaning, source), one line per run kind."""
    panels = list(
        dict.fromkeys(zip(steps["model"], steps["leaning"], steps["source"], strict=True))
    )
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (model, leaning, source) in zip(axes.flat, panels, strict=False):
        sub = steps[
            (steps["model"] == model) & (steps["leaning"] == leaning) & (steps["source"] == source)
        ]
        for condition, group in sub.groupby("condition", sort=True):
            ax.plot(group["step"], group["loss"], marker=".", label=condition)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{model}: {source} ({leaning})", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    _save(fig, png, pdf)
