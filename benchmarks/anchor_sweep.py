"""The anchor strategy's lambda (inhibitft.anchor_weight), swept on a finished workflow run.

For each lambda, the run's results folder is copied as hard links (nothing in it is touched) and
Snakemake trains InhibitFT with the anchor strategy there (`inhibitft.strategies: [anchor]`,
the rest of the run's config unchanged), dumps it on the source topic and rebuilds
`tables/inhibition_effect`. Reported per lambda:

- how far F_n, G without F_n and every other neuron moved from M0, as a share of what they
  moved under vanilla FT (docs/method.md, InhibitFT: moved_share); the goal is F_n at most
  0.1 while the others keep moving;
- what the run keeps of vanilla FT's stance shift, judge-free: the mean teacher-forced S_ll
  shift from M0 (`loglik.csv`, the log-likelihood pairs of every topic) on the source topic (TS)
  and on the other topics (CG), each over vanilla FT's;
- the final completion loss and anchor term of training.

The default is the smallest lambda that holds F_n and keeps TS_ll at the margin
(scoring.ts_kept_margin's default, 0.8); if none does both, the rows are the frontier and the
default is the lambda that holds F_n closest to M0 among those keeping TS_ll.

Usage: python benchmarks/anchor_sweep.py --run-results results [--config config.yaml]
           [--lambdas 0.1 1 10 100] [--work sweep] [--out benchmarks/results/anchor_sweep.md]
(run `make run` first: the run must hold the vanilla run, its neurons and dumps.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from common import command_line, write_report

from polneurons.tables.common import read_table

GOAL = 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-results", required=True, help="results folder of a finished run")
    parser.add_argument(
        "--config", default=["config.yaml"], help="the run's config file(s)", nargs="+"
    )
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0])
    parser.add_argument("--work", default="sweep", help="folder for each lambda's results copy")
    parser.add_argument("--mirror", help="data.mirror of the run (offline data)")
    parser.add_argument(
        "--ts-margin", type=float, default=0.8, help="TS_ll kept that counts as keeping TS"
    )
    parser.add_argument("--dry-run", action="store_true", help="show each lambda's jobs only")
    parser.add_argument("--out", default="benchmarks/results/anchor_sweep.md")
    return parser.parse_args(argv)


def stance_shift(run_dir: Path, base_dir: Path, source: str) -> tuple[float, float]:
    """(mean S_ll shift from M0 on the source topic, on the other topics), paired by pair."""
    run, base = read_table(run_dir / "loglik.csv"), read_table(base_dir / "loglik.csv")
    joined = run.merge(base, on=["topic", "pair"], suffixes=("", "_base"))
    joined["shift"] = joined["value"] - joined["value_base"]
    on_source = joined["topic"] == source
    return float(joined.loc[on_source, "shift"].mean()), float(
        joined.loc[~on_source, "shift"].mean()
    )


def sweep_one(args, weight: float, config: dict) -> list[dict]:
    work = Path(args.work) / f"anchor-{weight:g}"
    if not work.exists():  # an existing copy is reused: Snakemake skips what it finished
        shutil.copytree(args.run_results, work, copy_function=lambda s, d: Path(d).hardlink_to(s))
    overlay = work.parent / f"anchor-{weight:g}.yaml"
    settings = {
        "results": str(work),
        "inhibitft": {
            "strategies": ["anchor"],
            "anchor_weight": weight,
            "random_control": False,
            "null_control": False,
        },
    }
    if args.mirror:
        settings["data"] = {"mirror": str(Path(args.mirror).resolve())}
    overlay.write_text(yaml.safe_dump(settings))
    model, leaning = config["models"][0], config["leanings"][0]
    source = (config["inhibitft"].get("source_topics") or config["source_topics"])[0]
    n = config["inhibitft"].get("n", [5])[0]
    kind = f"ift-anchor-n{n:g}"
    runs = work / model / leaning / source
    targets = [work / "tables" / "inhibition_effect.csv", runs / kind / "loglik.csv"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            *map(str, targets),
            "--cores",
            "all",
            "--configfile",
            *args.config,
            str(overlay),
            "--rerun-triggers",
            "mtime",  # the copied run is reused as it is, whatever the code that made it
            *(["--dry-run"] if args.dry_run else []),
        ],
        check=True,
    )
    if args.dry_run:
        return []
    effect = read_table(work / "tables" / "inhibition_effect.csv")
    effect = effect[effect["condition"] == kind].set_index("set")["moved_share"]
    ts, cg = stance_shift(runs / kind, work / model / "base", source)
    ts_ft, cg_ft = stance_shift(runs / "ft", work / model / "base", source)
    log = json.loads((runs / kind / "train" / "train_log.json").read_text())
    return [
        {
            "lambda": weight,
            "F_n moved": effect["inhibited"],
            "G without F_n moved": effect["G without the inhibited"],
            "other neurons moved": effect["all other neurons"],
            "TS_ll kept": ts / ts_ft,
            "CG_ll kept": cg / cg_ft,
            "final loss": log["steps"][-1]["loss"],
            "final anchor term": log["steps"][-1]["anchor"],
            "training seconds": log["seconds"],
        }
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    config = {}
    for path in args.config:
        config.update(yaml.safe_load(Path(path).read_text()) or {})
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rows = [row for weight in sorted(args.lambdas) for row in sweep_one(args, weight, config)]
    if args.dry_run:
        return 0
    table = pd.DataFrame(rows)
    held = table[table["F_n moved"] <= GOAL]
    keeps = table[table["TS_ll kept"] >= args.ts_margin]
    verdict = [
        f"smallest lambda holding F_n at <= {GOAL} of vanilla: {held['lambda'].min():g}"
        if len(held)
        else f"no lambda holds F_n at <= {GOAL} of vanilla",
        f"lambdas keeping TS_ll at >= {args.ts_margin:g} of vanilla: "
        + (", ".join(f"{w:g}" for w in keeps["lambda"]) or "none"),
    ]
    both = held[held["TS_ll kept"] >= args.ts_margin]
    if len(both):
        verdict.append(f"the default: {both['lambda'].min():g}, the smallest doing both")
    elif len(keeps):
        best = keeps.loc[keeps["F_n moved"].idxmin()]
        verdict.append(
            f"none does both: the rows are the frontier; the default, {best['lambda']:g}, holds "
            f"F_n closest to M0 ({best['F_n moved']:.2f} of vanilla) of those keeping TS_ll"
        )
    reference = read_table(Path(args.run_results) / "tables" / "inhibition_effect.csv")
    reference = reference[reference["condition"].str.startswith("ift-")]
    lines = [
        "# The anchor strategy's lambda (inhibitft.anchor_weight)",
        "",
        f"On the finished run in `{Path(args.run_results).name}/` (config "
        f"{', '.join(args.config)}): InhibitFT with the anchor strategy at each lambda, F_n the "
        "top n% of G. Moved: each set's mean RMS contrast against M0 on the source topic's "
        "localization prompts, over the same under vanilla FT (1 = moved as much). Kept: the "
        "mean teacher-forced S_ll shift from M0 on the log-likelihood pairs, over vanilla FT's "
        "(TS: the source topic; CG: the other topics).",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "The run's own InhibitFT arms, for reference (moved share per set):",
        "",
        reference[["condition", "set", "moved_share"]].to_markdown(index=False, floatfmt=".3f"),
        "",
        *(f"- {line}" for line in verdict),
        command_line(argv),
        "",
    ]
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
