"""neuron_tables: set sizes, where the sets sit, overlap of G across sources, stability (METHOD 6)."""

import itertools

import pandas as pd
import torch

from polneurons.neuron_store import load_general, load_specific, load_summary
from polneurons.neurons import jaccard, layer_histogram
from polneurons.plots import neurons_per_layer
from polneurons.rule import rule_context
from polneurons.runs import run_of_path
from polneurons.tables import write_table

out = snakemake.output


def describe(neuron_set, total: int) -> dict:
    """Size, share of all neurons, and the mean and quartile layers of a set."""
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


with rule_context(snakemake) as ctx:
    sizes, layers, generals = [], [], {}
    for folder in snakemake.input.neurons:
        run = run_of_path(folder)
        summary = load_summary(folder)
        general = load_general(folder)
        generals[(run["model"], run["leaning"], run["source"])] = general
        stability = summary.get("stability") or {}
        low, high = stability.get("recovered_share_ci95") or (None, None)
        total = general.n_layers * general.width
        key = {"model": run["model"], "leaning": run["leaning"], "source": run["source"]}
        key |= {"site": summary["site"], "k": summary["k"], "n_layers": general.n_layers}
        sets = {"general": general} | {
            f"specific:{t}": load_specific(folder, t) for t in summary["topics"]
        }
        for name, neuron_set in sets.items():
            row = {**key, "set": name, **describe(neuron_set, total)}
            if name == "general":
                row |= {
                    "stability_recovered": stability.get("recovered_share_mean"),
                    "stability_lo": low,
                    "stability_hi": high,
                }
            sizes.append(row)
            hist = layer_histogram(neuron_set)
            label = name.removeprefix("specific:")
            layers.append(
                hist.assign(
                    model=run["model"], source=f"{run['source']} ({run['leaning']})", set=label
                )
            )
        ctx.log.info(
            "%s: |G| = %d, mean layer %.1f of %d",
            folder,
            len(general),
            sizes[-len(sets)]["mean_layer"] or -1,
            general.n_layers,
        )
    write_table(
        pd.DataFrame(sizes),
        out.sets_csv,
        out.sets_md,
        title="Neuron sets: sizes, layers, stability of G",
    )
    overlap = [
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
    overlap_frame = pd.DataFrame(
        overlap, columns=["model", "leaning", "source_a", "source_b", "jaccard"]
    )
    write_table(
        overlap_frame,
        out.overlap_csv,
        out.overlap_md,
        title="Jaccard overlap of G across source topics",
    )
    neurons_per_layer(pd.concat(layers, ignore_index=True), out.layers_png, out.layers_pdf)
