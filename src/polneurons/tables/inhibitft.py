"""InhibitFT tables (method.md: InhibitFT): log-likelihood summary, the ablation curve, and
how much the inhibited neurons still move."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polneurons.kinds import split_replicate


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
    from polneurons.kinds import parse_kind

    curve = []
    per_model = main[(main["source"] == "mean") & (main["model"] != "mean")]
    for _, row in per_model.iterrows():
        kind = parse_kind(row["condition"], pooled=True)
        arm = {
            "ift": "InhibitFT",
            "nift": "InhibitFT on G_null",
            "rnd": "random",
            "restore": "restore at inference",
        }[kind.family]
        label = f"{arm} ({kind.strategy})" if kind.strategy else arm
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


LOGLIK_CUT_COLUMNS = [
    "model", "leaning", "source", "condition", "control", "pairs", "pooled_runs",
    "CG_ll_cut", "CG_ll_cut_lo", "CG_ll_cut_hi", "TS_ll_kept", "TS_ll_kept_lo", "TS_ll_kept_hi",
    "versus", "difference", "difference_lo", "difference_hi",
]  # fmt: skip


def loglik_cuts(
    frame: pd.DataFrame, control: str, n_boot: int, seed: int, alpha: float
) -> pd.DataFrame:
    """Claim 3 without a judge (method.md: InhibitFT, "Both readouts"): per InhibitFT arm, the
    relative cut of the cross-topic S_ll shift and the share of the source topic's kept, against
    the vanilla control, on the held-out log-likelihood pairs:

        CG_ll_cut = 1 - CG_ll(X) / CG_ll(control),   TS_ll_kept = TS_ll(X) / TS_ll(control)

    with dS_ll(X) = S_ll(X) - S_ll(M0) per pair, TS_ll its mean on the source topic and CG_ll
    the mean over the other topics of each topic's mean (`tables.stance.loglik_shift`). Each
    kind pools its random draws (per-pair S_ll averaged) and its training replicates (their
    mean). CIs: one bootstrap over pairs stratified by topic, the same resampled pairs for every
    condition, crossed with a resampling of the training replicates (`metrics.seed_weights`,
    shared by every kind with as many replicates), so each InhibitFT arm minus each of its
    controls (`kinds.inhibitft_controls`: random, null) gets a paired CI (`versus`,
    `difference`) that covers training noise.

    `frame`: `tables.stance.collect_loglik`'s rows (model, leaning, source, condition, topic,
    pair, value), base included.
    """
    from polneurons.kinds import inhibitft_controls, split_draw
    from polneurons.metrics import seed_weights
    from polneurons.tables.readout import PairResampler, percentile_ci

    rows = []
    base_rows = frame[frame["condition"] == "base"]
    for (model, leaning, source), run in frame[frame["condition"] != "base"].groupby(
        ["model", "leaning", "source"]
    ):
        base = base_rows[base_rows["model"] == model].set_index(["topic", "pair"])["value"]
        # kind: the condition without its draw and replicate, which it pools
        pooled = run.assign(kind=[split_draw(split_replicate(c)[0])[0] for c in run["condition"]])
        topics = {
            topic: np.asarray(sorted(group["pair"].unique()))
            for topic, group in pooled.groupby("topic")
        }
        if source not in topics or len(topics) < 2:
            continue
        others = [t for t in topics if t != source]
        resample = PairResampler(topics, n_boot, seed)
        figures, draws = {}, {}
        for kind, arm in pooled.groupby("kind"):
            # per training replicate, its draws' per-pair S_ll averaged: TS_ll and CG_ll with
            # their bootstrap over pairs; pooled, the replicates' mean, and in each bootstrap
            # replicate their mean under resampled seed weights (paired across kinds)
            replicate = [split_replicate(c)[1] or 0 for c in arm["condition"]]
            per_seed = []
            for _, seed_arm in arm.groupby(replicate):
                by_pair = seed_arm.groupby(["topic", "pair"])["value"].mean()
                shift = {
                    t: (by_pair.loc[t].reindex(ids) - base.loc[t].reindex(ids)).to_numpy(float)
                    for t, ids in topics.items()
                }
                per_seed.append(resample.source_and_cross(shift, source, others))
            weights = seed_weights(n_boot, len(per_seed), seed)  # [n_boot, seeds]
            ts, ts_boot, cg, cg_boot = (
                float(np.mean([f[0] for f in per_seed])),
                (weights * np.stack([f[1] for f in per_seed], axis=1)).sum(1),
                float(np.mean([f[2] for f in per_seed])),
                (weights * np.stack([f[3] for f in per_seed], axis=1)).sum(1),
            )
            figures[kind] = (ts, ts_boot, cg, cg_boot)
            draws[kind] = arm["condition"].nunique()  # the runs pooled: draws x replicates
        if control not in figures:
            continue
        ts_c, ts_c_boot, cg_c, cg_c_boot = figures[control]
        cuts = {}
        for kind, (ts, ts_boot, cg, cg_boot) in figures.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                cut, cut_boot = 1 - cg / cg_c, 1 - cg_boot / cg_c_boot
                kept, kept_boot = ts / ts_c, ts_boot / ts_c_boot
            cuts[kind] = (cut, cut_boot, kept, kept_boot)
        for kind, (cut, cut_boot, kept, kept_boot) in cuts.items():
            if kind == control:
                continue
            row = dict(
                model=model, leaning=leaning, source=source, condition=kind, control=control,
                pairs=sum(len(ids) for ids in topics.values()), pooled_runs=draws[kind],
                CG_ll_cut=cut, TS_ll_kept=kept,
            )  # fmt: skip
            row["CG_ll_cut_lo"], row["CG_ll_cut_hi"] = percentile_ci(cut, cut_boot, alpha)
            row["TS_ll_kept_lo"], row["TS_ll_kept_hi"] = percentile_ci(kept, kept_boot, alpha)
            versus = [c for c in inhibitft_controls(kind) if c in cuts]
            for against in versus or [""]:
                contrast = dict(row, versus=against)
                if against:
                    other, other_boot = cuts[against][:2]
                    diff = cut - other
                    contrast["difference"] = diff
                    contrast["difference_lo"], contrast["difference_hi"] = percentile_ci(
                        diff, cut_boot - other_boot, alpha
                    )
                rows.append(contrast)
    return pd.DataFrame(rows, columns=LOGLIK_CUT_COLUMNS)
