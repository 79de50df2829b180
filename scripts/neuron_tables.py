"""neuron_tables: set sizes, where the sets sit, overlap of G across sources, stability (method.md: PNLAC)."""

from pathlib import Path

import pandas as pd

from polneurons.io import read_json
from polneurons.neuron_store import load_general, load_specific, load_summary
from polneurons.plots import neurons_per_layer
from polneurons.rule import rule_context
from polneurons.runs import run_of_path
from polneurons.tables.common import write_table
from polneurons.tables.neurons import general_overlap, neuron_set_rows, null_overlap

out = snakemake.output


with rule_context(snakemake) as ctx:
    sizes, layers, generals = [], [], {}
    for folder in snakemake.input.neurons:
        run = run_of_path(folder)
        summary = load_summary(folder)
        general = load_general(folder)
        generals[(run["model"], run["leaning"], run["source"])] = general
        specific = {t: load_specific(folder, t) for t in summary["topics"]}
        rows, histograms = neuron_set_rows(run, summary, general, specific)
        sizes += rows
        layers += histograms
        ctx.log.info(
            "%s: |G| = %d, mean layer %.1f of %d",
            folder,
            len(general),
            rows[0]["mean_layer"] or -1,
            general.n_layers,
        )
    write_table(
        pd.DataFrame(sizes),
        out.sets_csv,
        out.sets_md,
        title="Neuron sets: sizes, layers, stability of G",
    )
    nulls, examples_from = {}, {}
    for folder, train in zip(snakemake.input.null, snakemake.input.null_train, strict=True):
        run = run_of_path(folder)
        key = (run["model"], run["leaning"], run["source"])
        nulls[key] = load_general(folder)
        examples_from[key] = read_json(Path(train) / "train_log.json").get("examples_from", "")
    write_table(
        null_overlap(generals, nulls, examples_from),
        out.null_csv,
        out.null_md,
        title="G against G_null, the general set of a fine-tune on neutral answers",
    )
    overlap_frame = general_overlap(generals)
    write_table(
        overlap_frame,
        out.overlap_csv,
        out.overlap_md,
        title="Jaccard overlap of G across source topics",
    )
    neurons_per_layer(pd.concat(layers, ignore_index=True), out.layers_png, out.layers_pdf)
