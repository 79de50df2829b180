"""polneurons.sharing: the recipe-free runs a second results folder hard-links from a first."""

from __future__ import annotations

import os
import subprocess
import sys

from polneurons.sharing import RECIPE_FREE_RUN_FILES, link_recipe_free_runs

RUN = "m/right/race/ft"
RECIPE_FREE = [
    "data/raw/topics.json",
    "models/m/model.json",
    "judge/classifier.pkl",
    "m/base/ratings.jsonl",
    f"{RUN}/train/adapter/adapter_model.safetensors",
    *(f"{RUN}/{name}" for name in RECIPE_FREE_RUN_FILES if name != "train"),
]
RECIPE_BOUND = [
    f"{RUN}/neurons/general.pt",
    f"{RUN}/dumps/race/shard-0.pt",
    "m/right/race/patch-general/ratings.jsonl",
    "m/right/race/ift-anchor-n5/train/adapter/adapter_model.safetensors",
    "tables/claims.csv",
    "logs/finetune/m/right/race/ft.log",
]


def _results(root, names):
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    return root


def test_the_recipe_free_runs_are_hard_linked_with_their_times_and_the_rest_is_not(tmp_path):
    first = _results(tmp_path / "first", RECIPE_FREE + RECIPE_BOUND)
    train = first / RUN / "train"
    os.utime(train, (2_000_000, 2_000_000))  # a folder output: Snakemake reads its time too
    second = tmp_path / "second"
    link_recipe_free_runs(first, second)
    for name in RECIPE_FREE:
        assert (second / name).stat().st_ino == (first / name).stat().st_ino, name
    assert (second / RUN / "train").stat().st_mtime == 2_000_000
    for name in RECIPE_BOUND:
        assert not (second / name).exists(), name


def test_what_the_second_folder_has_is_kept(tmp_path):
    first = _results(tmp_path / "first", RECIPE_FREE)
    second = _results(tmp_path / "second", ["m/base/ratings.jsonl"])
    (second / "m/base/ratings.jsonl").write_text("the second folder's own\n")
    link_recipe_free_runs(first, second)
    assert (second / "m/base/ratings.jsonl").read_text() == "the second folder's own\n"
    assert (second / f"{RUN}/scores.csv").stat().st_ino == (
        first / f"{RUN}/scores.csv"
    ).stat().st_ino


def test_a_missing_first_folder_is_one_line_naming_it_and_the_fix(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "polneurons.sharing", str(tmp_path / "none"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("polneurons error:") and str(tmp_path / "none") in line
    assert " -- fix: run the first configuration into" in line
    assert not (tmp_path / "b").exists()
