"""InhibitFT tables (method.md: InhibitFT): log-likelihood summary, the ablation curve, and
how much the inhibited neurons still move."""

from __future__ import annotations

import pandas as pd

from polneurons.runs import split_replicate


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
