"""Neuron-set tables (method.md: PNLAC): sizes and layers of G and S_t, overlaps."""

from __future__ import annotations

import pandas as pd


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
    answers came from ("topic" or "pooled"), and the lower-quartile layer of each (the depth
    claim's control). A Jaccard near 1 says G is what fine-tuning as such moves, not stance.

    >>> from polneurons.neurons import NeuronSet
    >>> g = NeuronSet([0, 0, 1], [0, 1, 0], [3.0, 2.0, 1.0], "mlp_output", 2, 2)
    >>> n = NeuronSet([0, 1], [1, 1], [1.0, 1.0], "mlp_output", 2, 2)
    >>> null_overlap({("m", "r", "s"): g}, {("m", "r", "s"): n}, {})[["shared", "jaccard"]].values.tolist()
    [[1.0, 0.25]]
    """
    import torch

    from polneurons.neurons import jaccard

    columns = ["model", "leaning", "source", "size_G", "size_G_null", "shared", "jaccard"]
    columns += ["n_layers", "layer_q25_G", "layer_q25_G_null"]
    rows = []
    for key, null in nulls.items():
        general = generals[key]
        shared = int(torch.isin(general.flat, null.flat).sum())
        values = [len(general), len(null), shared, jaccard(general, null), general.n_layers]
        values += [describe_set(s, 1)["layer_q25"] for s in (general, null)]
        rows.append(dict(zip(columns, [*key, *values], strict=True)))
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(null_examples=[examples_from.get(k, "") for k in nulls])
