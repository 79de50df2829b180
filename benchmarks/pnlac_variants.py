"""What a PNLAC recipe makes of one run's contrasts: is G the template and the layer scale?

For each neurons folder (``<results>/<model>/<leaning>/<source>/ft/neurons``) given: the recipe
it was localized with, |G| over the mean |N_t|, the correlation of the topics' r_t (Pearson,
min and median over topic pairs), the mean layer of G, the share of G in the last quarter of
the layers, and the layer holding most of F_5. With ``--recompute`` it also ranks the stored
r_t under both `rank_within` options. Results go to a Markdown file (``--out``).

    python benchmarks/pnlac_variants.py results/smollm2/right/crime_and_gun/ft/neurons \
        --out benchmarks/results/pnlac_variants.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from polneurons.neuron_store import load_summary  # noqa: E402
from polneurons.neurons import localize, top_fraction, top_k_percent  # noqa: E402


def describe(folder: Path, rank_within: str | None = None) -> dict:
    summary = load_summary(folder)
    stored = torch.load(folder / "contrast.pt")
    topics, r = stored["topics"], stored["r"].float()
    within = rank_within or summary.get("rank_within", "all")
    general, _ = localize(dict(zip(topics, r, strict=True)), summary["k"], rank_within=within)
    n_t = top_k_percent(r, summary["k"], within).sum(dim=(1, 2)).float().mean().item()
    flat = r.flatten(1)
    pearson = [
        float(torch.corrcoef(torch.stack([flat[a], flat[b]]))[0, 1])
        for a, b in itertools.combinations(range(len(topics)), 2)
    ]
    n_layers = r.shape[1]
    late = general.layers >= n_layers - n_layers // 4
    f5 = top_fraction(general, 5) if len(general) else general
    f5_layers = torch.bincount(f5.layers, minlength=n_layers)
    return {
        "run": "/".join(folder.parts[-5:-2]),
        "recipe": f"{summary.get('tokens', 'all')}/{summary.get('contrast', 'rms')}/{within}",
        "G_size": len(general),
        "G_over_N_t": len(general) / n_t,
        "pearson_min": min(pearson),
        "pearson_median": float(torch.tensor(pearson).median()),
        "G_mean_layer": float(general.layers.float().mean()) if len(general) else float("nan"),
        "G_share_last_quarter": float(late.float().mean()) if len(general) else float("nan"),
        "F5_top_layer": int(f5_layers.argmax()),
        "F5_share_there": float(f5_layers.max() / max(1, len(f5))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--recompute", action="store_true", help="rank both ways")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pnlac_variants.md"))
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        rows.append(describe(folder))
        if args.recompute:
            stored = load_summary(folder).get("rank_within", "all")
            rows += [describe(folder, w) for w in ("all", "layer") if w != stored]
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    command = "python benchmarks/pnlac_variants.py " + " ".join(sys.argv[1:])
    text = (
        f"# PNLAC recipes on stored contrasts\n\n`{command}`\n\n"
        + "\n".join(lines)
        + "\n\nG_over_N_t: |G| over the mean |N_t| (1: every topic's top set is G); pearson: "
        "correlation of the topics' r_t over all neurons; G_share_last_quarter: share of G in "
        "the last quarter of the layers; F5: the top 5% of G (InhibitFT's set at n = 5).\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
