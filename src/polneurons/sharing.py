"""What a second results folder takes from a first one instead of recomputing it.

The data, the model records, the judge, the base model's runs and each vanilla fine-tune's
training, answers and scores do not depend on the PNLAC recipe. A second recipe on the same
fine-tunes (`make cpu-study`: `configs/cpu-study-paper-formula.yaml` after
`configs/cpu-study.yaml`) hard-links them from the first results folder, as `cp -aln` would:
the same files (no copy), their times kept (Snakemake sees them up to date), and nothing the
second folder already has is replaced.

    python -m polneurons.sharing FROM TO
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# results folders that hold no run: shared whole
SHARED_FOLDERS = ("data", "models", "judge")
# what a vanilla fine-tune's run folder holds that the PNLAC recipe does not touch
RECIPE_FREE_RUN_FILES = (
    "train",
    "generations.jsonl",
    "health.json",
    "loglik.csv",
    "perplexity.json",
    "ratings.jsonl",
    "scores.csv",
)


def _link(source: str, target: str) -> None:
    if not os.path.lexists(target):
        os.link(source, target)


def _link_path(source: Path, target: Path) -> None:
    """A file or a folder tree of hard links at `target`, times and modes kept (copystat on
    every folder), without replacing anything already there."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        _link(str(source), str(target))


def recipe_free_paths(source: Path) -> list[Path]:
    """The paths under the results folder `source` that do not depend on the PNLAC recipe
    (module docstring), relative to it: the shared folders, each model's base run, and the
    recipe-free files of each vanilla fine-tune (`<model>/<leaning>/<source>/ft`).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("judge/classifier.pkl", "m/base/scores.csv", "m/right/race/ft/scores.csv",
    ...              "m/right/race/ft/neurons/general.pt", "m/right/race/patch-general/scores.csv"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True); (root / name).touch()
    >>> [str(p) for p in recipe_free_paths(root)]
    ['judge', 'm/base', 'm/right/race/ft/scores.csv']
    """
    found = [Path(name) for name in SHARED_FOLDERS if (source / name).is_dir()]
    for base in sorted(source.glob("*/base")):
        found.append(base.relative_to(source))
        for run in sorted(base.parent.glob("*/*/ft")):
            found += [
                (run / name).relative_to(source)
                for name in RECIPE_FREE_RUN_FILES
                if (run / name).exists()
            ]
    return found


def link_recipe_free_runs(source: Path, target: Path) -> list[Path]:
    """Hard-link `recipe_free_paths(source)` into the results folder `target`; returns them."""
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise FileNotFoundError(f"no results folder {source} to share runs from")
    paths = recipe_free_paths(source)
    for path in paths:
        _link_path(source / path, target / path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m polneurons.sharing FROM TO", file=sys.stderr)
        return 2
    try:
        paths = link_recipe_free_runs(Path(args[0]), Path(args[1]))
    except OSError as exc:
        fix = (
            f"run the first configuration into {args[0]} first"
            if isinstance(exc, FileNotFoundError)
            else "put both results folders on one file system (hard links)"
        )
        print(f"polneurons error: {exc} -- fix: {fix}", file=sys.stderr)
        return 1
    print(f"linked {len(paths)} recipe-free paths from {args[0]} into {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
