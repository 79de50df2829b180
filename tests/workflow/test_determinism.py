"""Determinism: two runs of the tiny configuration with the same seed, in fresh results folders,
give bit-identical neuron sets, adapters, ratings and scores and identical tables on CPU.

The second run is the fault-injection tests' resumed run (tests/workflow/resumed_run.py): the
whole tiny run made again in its own folder, killed at four points on the way. It makes every
output itself, so a difference means the workflow is not deterministic or a resume lost
something; either is a bug, and the file that differs says where to look.
"""

from __future__ import annotations

import pytest
import torch
from resumed_run import resumed_run  # noqa: F401 - session fixture
from workflow_helpers import (  # noqa: F401 - session fixtures
    digests,
    final_tables,
    neuron_files,
    per_run_scores,
    reference_run,
    tiny_model_dir,
)

# one xdist worker makes the reference run and every run built from it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reference")]


def test_neuron_set_files_and_their_sha256_sidecars_are_identical(reference_run, resumed_run):  # noqa: F811
    first, second = neuron_files(reference_run.results), neuron_files(resumed_run.results)
    assert any(name.endswith("general.pt") for name in first)
    assert any(name.endswith("general.pt.sha256") for name in first)
    assert first == second


def test_neuron_set_tensors_are_equal(reference_run, resumed_run):  # noqa: F811
    """The same check on the loaded tensors, so a failure says which set and field differ."""
    names = sorted(digests(reference_run.results, "tiny/**/neurons/**/*.pt"))
    assert names
    for name in names:
        a = torch.load(reference_run.results / name, weights_only=True)
        b = torch.load(resumed_run.results / name, weights_only=True)
        assert a.keys() == b.keys(), name
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), f"{name}: {key}"
            else:
                assert a[key] == b[key], f"{name}: {key}"


def test_neuron_summaries_are_identical(reference_run, resumed_run):  # noqa: F811
    pattern = "tiny/**/neurons/summary.json"
    assert digests(reference_run.results, pattern) == digests(resumed_run.results, pattern)


def test_ratings_and_scores_of_every_run_are_identical(reference_run, resumed_run):  # noqa: F811
    first = per_run_scores(reference_run.results)
    assert any(name.endswith("ratings.jsonl") for name in first)
    assert any(name.endswith("loglik.csv") for name in first)
    assert first == per_run_scores(resumed_run.results)


def test_adapters_are_bit_identical(reference_run, resumed_run):  # noqa: F811
    pattern = "tiny/**/train/adapter/*.safetensors"
    first = digests(reference_run.results, pattern)
    assert len(first) >= 3  # vanilla, InhibitFT, random control
    assert first == digests(resumed_run.results, pattern)


def test_every_table_is_identical(reference_run, resumed_run):  # noqa: F811
    first = final_tables(reference_run.results)
    assert "tables/neuron_sets.csv" in first and "tables/inhibitft_main.csv" in first
    assert first == final_tables(resumed_run.results)
