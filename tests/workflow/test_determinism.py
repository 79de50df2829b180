"""Determinism (issue 7): two runs of the tiny configuration with the same seed, in fresh
results folders, give bit-identical neuron sets and identical scores and tables on CPU."""

from __future__ import annotations

import time

import pytest
import torch
from workflow_helpers import (  # noqa: F401 - session fixtures
    Workdir,
    digests,
    final_tables,
    make_workdir,
    neuron_files,
    per_run_scores,
    reference_run,
    tiny_model_dir,
)

# one xdist worker makes the reference run and every run built from it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reference")]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, tiny_model_dir) -> Workdir:  # noqa: F811
    work = make_workdir(tmp_path_factory.mktemp("second"), tiny_model_dir)
    started = time.monotonic()
    proc = work.run()
    work.seconds = time.monotonic() - started
    assert proc.returncode == 0, work.explain(proc)
    return work


def test_neuron_set_files_and_their_sha256_sidecars_are_identical(reference_run, second_run):  # noqa: F811
    first, second = neuron_files(reference_run.results), neuron_files(second_run.results)
    assert any(name.endswith("general.pt") for name in first)
    assert any(name.endswith("general.pt.sha256") for name in first)
    assert first == second


def test_neuron_set_tensors_are_equal(reference_run, second_run):  # noqa: F811
    """The same check on the loaded tensors, so a failure says which set and field differ."""
    names = sorted(digests(reference_run.results, "tiny/**/neurons/**/*.pt"))
    assert names
    for name in names:
        a = torch.load(reference_run.results / name, weights_only=True)
        b = torch.load(second_run.results / name, weights_only=True)
        assert a.keys() == b.keys(), name
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), f"{name}: {key}"
            else:
                assert a[key] == b[key], f"{name}: {key}"


def test_neuron_summaries_are_identical(reference_run, second_run):  # noqa: F811
    pattern = "tiny/**/neurons/summary.json"
    assert digests(reference_run.results, pattern) == digests(second_run.results, pattern)


def test_ratings_and_scores_of_every_run_are_identical(reference_run, second_run):  # noqa: F811
    first = per_run_scores(reference_run.results)
    assert any(name.endswith("ratings.jsonl") for name in first)
    assert any(name.endswith("loglik.csv") for name in first)
    assert first == per_run_scores(second_run.results)


def test_adapters_are_bit_identical(reference_run, second_run):  # noqa: F811
    pattern = "tiny/**/train/adapter/*.safetensors"
    first = digests(reference_run.results, pattern)
    assert len(first) >= 3  # vanilla, InhibitFT, random control
    assert first == digests(second_run.results, pattern)


def test_every_table_is_identical(reference_run, second_run):  # noqa: F811
    first = final_tables(reference_run.results)
    assert "tables/neuron_sets.csv" in first and "tables/inhibitft_main.csv" in first
    assert first == final_tables(second_run.results)
