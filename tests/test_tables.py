"""Table logic (polneurons.tables) on small hand-made frames."""

import doctest

import numpy as np
import pandas as pd
import pytest

from polneurons import tables


def _scores(values, replicate=None):
    rows = [
        {"model": "m", "source": src, "condition": cond, "test_set": ts, "S": s}
        for (cond, src, ts), s in values.items()
    ]
    frame = pd.DataFrame(rows)
    return frame if replicate is None else frame.assign(replicate=replicate)


def test_recovered_share_is_the_patched_shift_over_the_fine_tuning_shift_per_set_and_pooled():
    values = {
        ("base", "-", "a"): 0.0,
        ("base", "-", "b"): 1.0,
        ("ft", "t", "a"): 2.0,
        ("ft", "t", "b"): 1.0,  # FT did not move b: its share is undefined
        ("patch-general", "t", "a"): 1.0,
        ("patch-general", "t", "b"): 1.5,
        ("patch-all", "t", "a"): 1.6,
        ("patch-all", "t", "b"): 1.0,
    }
    table = tables.patching_recovered(_scores(values)).set_index(["condition", "test_set"])
    assert table.loc[("patch-general", "a"), "recovered"] == pytest.approx(0.5)
    assert np.isnan(table.loc[("patch-general", "b"), "recovered"])
    # pooled: (1 + 0.5) shifted of (2 + 0) moved by FT
    assert table.loc[("patch-general", "all"), "recovered"] == pytest.approx(1.5 / 2.0)
    assert table.loc[("patch-general", "a"), "recovered_vs_all"] == pytest.approx(0.5 / 0.8)
    assert table.loc[("patch-all", "all"), "recovered_vs_all"] == pytest.approx(1.0)


def test_without_the_all_condition_the_share_of_the_ceiling_is_undefined():
    values = {("base", "-", "a"): 0.0, ("ft", "t", "a"): 1.0, ("patch-general", "t", "a"): 0.3}
    table = tables.patching_recovered(_scores(values))
    assert table["recovered_vs_all"].isna().all()


def test_replicates_are_kept_apart():
    one = {("base", "-", "a"): 0.0, ("ft", "t", "a"): 1.0, ("patch-general", "t", "a"): 0.2}
    two = {**one, ("patch-general", "t", "a"): 0.6}
    frame = pd.concat([_scores(one, 0), _scores(two, 1)], ignore_index=True)
    table = tables.patching_recovered(frame)
    general = table[(table["condition"] == "patch-general") & (table["test_set"] == "a")]
    assert sorted(general["recovered"].round(6)) == [0.2, 0.6]


def test_the_module_examples_hold():
    assert doctest.testmod(tables).failed == 0
