"""neuron_tables: set sizes, neurons per layer, overlap of G across sources, stability (METHOD 6)."""

import itertools

import pandas as pd

from polneurons.neuron_store import load_general, load_specific, load_summary
from polneurons.neurons import jaccard, layer_histogram
from polneurons.plots import neurons_per_layer
from polneurons.rule import rule_context
from polneurons.tables import parse_run, write_table

p, out = snakemake.params, snakemake.output
with rule_context(snakemake) as ctx:
    sizes, layers, generals = [], [], {}
    for folder in snakemake.input.neurons:
        run = parse_run(folder)
        summary = load_summary(folder)
        general = load_general(folder)
        generals[(run["model"], run["leaning"], run["source"])] = general
        stability = summary.get("stability") or {}
        total = general.n_layers * general.width
        sizes.append(
            {
                "model": run["model"],
                "leaning": run["leaning"],
                "source": run["source"],
                "site": summary["site"],
                "k": summary["k"],
                "set": "general",
                "size": len(general),
                "share_of_all": len(general) / total,
                "stability_recovered": stability.get("recovered_share_mean"),
                "stability_ci95": stability.get("recovered_share_ci95"),
            }
        )
        sets = {"general": general} | {t: load_specific(folder, t) for t in summary["topics"]}
        for name, neuron_set in sets.items():
            if name != "general":
                sizes.append(
                    {
                        "model": run["model"],
                        "leaning": run["leaning"],
                        "source": run["source"],
                        "site": summary["site"],
                        "k": summary["k"],
                        "set": f"specific:{name}",
                        "size": len(neuron_set),
                        "share_of_all": len(neuron_set) / total,
                    }
                )
            hist = layer_histogram(neuron_set)
            layers.append(
                hist.assign(
                    model=run["model"], source=f"{run['source']} ({run['leaning']})", set=name
                )
            )
        weighted = (hist_g := layer_histogram(general))["layer"].mul(hist_g["count"]).sum() / max(
            len(general), 1
        )
        ctx.log.info(
            "%s: |G| = %d, mean layer of G %.1f of %d",
            folder,
            len(general),
            weighted,
            general.n_layers,
        )
    write_table(
        pd.DataFrame(sizes), out.sets_csv, out.sets_md, title="Neuron set sizes and stability of G"
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
