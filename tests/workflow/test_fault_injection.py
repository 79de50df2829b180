"""Fault injection on the real workflow: SIGKILL at four points of the tiny run, then resume
with the command a user types (tests/workflow/resumed_run.py; profiles/local sets
rerun-incomplete already); corrupt a dump shard and an adapter file; kill a judge.

The resumed run must end with the same tables as an uninterrupted run, byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from resumed_run import KEEP_DUMPS, KILL_POINTS, RUN, resumed_run  # noqa: F401 - session fixture
from workflow_helpers import (  # noqa: F401 - session fixtures
    assert_one_line_error,
    digests,
    final_tables,
    incomplete_outputs,
    kill_group,
    make_writable,
    neuron_files,
    reference_run,
    sha256_of,
    subprocess_env,
    tiny_model_dir,
    wait_until,
)

# one xdist worker makes the reference run and every run built from it
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reference")]


def test_incomplete_markers_are_read_back_as_snakemake_writes_them(tmp_path):
    """Snakemake splits a marker name longer than a file name into "@<part>" folders; the
    kill points must see those outputs too (a raw download's path is that long)."""
    from snakemake.persistence.file import FilePersistence

    layout = object.__new__(FilePersistence)
    layout._max_len = None
    folder = tmp_path / ".snakemake" / "incomplete"
    folder.mkdir(parents=True)
    outputs = [str(tmp_path / "results" / "short"), str(tmp_path / ("deep/" * 80) / "file.json")]
    for output in outputs:
        marker = Path(layout._record_path(str(folder), output))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    assert any(part.startswith("@") for part in Path(marker).relative_to(folder).parts)
    assert sorted(incomplete_outputs(tmp_path)) == sorted(outputs)


def test_runs_killed_at_four_points_resume_to_the_reference_tables(resumed_run, reference_run):  # noqa: F811
    assert resumed_run.kills[0] == "download_data"
    assert sorted(resumed_run.kills) == sorted(p.rule for p in KILL_POINTS)
    resumed = final_tables(resumed_run.results)
    assert {"tables/ts_cg.csv", "tables/neuron_sets.csv", "tables/claims.csv"} <= set(resumed)
    assert resumed == final_tables(reference_run.results)
    assert neuron_files(resumed_run.results) == neuron_files(reference_run.results)
    assert resumed_run.running_outputs() == [], "outputs left marked incomplete"


def test_nothing_is_left_to_do_after_the_resumed_run(resumed_run):  # noqa: F811
    dry = resumed_run.run(KEEP_DUMPS, "-n", timeout=300)
    assert dry.returncode == 0, dry.output[-3000:]
    assert "Nothing to be done" in dry.output, dry.output[-3000:]


# ---------------------------------------------------------------- corrupt files


def test_truncated_dump_shard_is_refused_then_recomputed_once_removed(resumed_run, reference_run):  # noqa: F811
    work = resumed_run
    dump = work.results / RUN / "dumps" / "race"
    shard = sorted(dump.glob("shard-*.pt"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    neurons = str(work.results / RUN / "neurons")

    refused = work.run(neurons, "--forcerun", "localize_neurons", KEEP_DUMPS, timeout=300)
    assert refused.returncode != 0
    line = assert_one_line_error(refused.output, "polneurons error:", shard.name, "sha256")
    log = work.results / "logs" / "localize_neurons" / f"{RUN}.log"
    assert line in log.read_text()

    shutil.rmtree(dump)  # what the error tells the user to do
    again = work.run(neurons, KEEP_DUMPS, timeout=300)
    assert again.returncode == 0, work.explain(again)
    assert "rule dump_activations" in again.output
    assert digests(work.results, f"{RUN}/neurons/**/*.pt") == digests(
        reference_run.results, f"{RUN}/neurons/**/*.pt"
    )


def test_altered_adapter_is_refused_then_retrained_once_removed(resumed_run, reference_run):  # noqa: F811
    work = resumed_run
    train = work.results / RUN / "train"
    weights = train / "adapter" / "adapter_model.safetensors"
    make_writable(train)  # Snakemake protected() the folder (read-only)
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x40  # a flipped bit inside the weights: still loads without a check
    weights.write_bytes(bytes(blob))
    generations = work.results / RUN / "generations.jsonl"
    generations.unlink()

    refused = work.run(str(generations), timeout=300)
    assert refused.returncode != 0
    assert_one_line_error(
        refused.output, "polneurons error:", "adapter_model.safetensors", "sha256", "altered"
    )
    assert not generations.exists()

    shutil.rmtree(train)  # what the error tells the user to do (after chmod -R u+w)
    again = work.run(str(generations), timeout=300)
    assert again.returncode == 0, work.explain(again)
    assert "rule finetune" in again.output
    reference = reference_run.results / RUN
    assert sha256_of(weights) == sha256_of(reference / "train" / "adapter" / weights.name)
    assert sha256_of(generations) == sha256_of(reference / "generations.jsonl")


# ---------------------------------------------------------------- judge cache under SIGKILL


JUDGE_SCRIPT = """
import json, sys
from polneurons.judges import JudgeItem, OpenAIJudge, Templates
base_url, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
judge = OpenAIJudge(base_url, "gpt-4o-mini", api_key_env="POLNEURONS_KILL_TEST_KEY",
                    templates=Templates(topic="{test_topic}: {response}", general="{response}"),
                    cache_path=cache, max_workers=2, timeout=10)
items = [JudgeItem("pct", None, f"statement {i}") for i in range(n)]
print(json.dumps(judge.rate(items)))
"""


def cached_keys(cache: Path) -> set[str]:
    """Keys of the complete lines of a judge cache (a kill may cut the last line short)."""
    keys = set()
    for line in cache.read_bytes().split(b"\n"):
        try:
            keys.add(json.loads(line)["key"])
        except ValueError:
            continue
    return keys


def test_judge_killed_mid_rating_resumes_from_its_cache(tmp_path):
    n = 40
    endpoint = FakeOpenAI(answer=lambda prompt: "Neutral", delay=0.1).start()
    cache = tmp_path / "openai_cache.jsonl"
    env = subprocess_env() | {"POLNEURONS_KILL_TEST_KEY": "sk-test", "NO_PROXY": "127.0.0.1"}
    command = [sys.executable, "-c", JUDGE_SCRIPT, endpoint.base_url, str(cache), str(n)]
    try:
        first = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        wait_until(
            lambda: cache.is_file() and len(cache.read_bytes().splitlines()) >= n // 3,
            first,
            timeout=120,
            poll=0.01,
            what="a third of the ratings cached",
        )
        kill_group(first)
        time.sleep(0.5)  # let the server log the requests the killed client had sent
        asked_before_kill = len(endpoint.prompts)
        cached_before_kill = cached_keys(cache)
        assert n // 3 <= len(cached_before_kill) < n, "the kill came too late to test a resume"

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-3000:]
        assert json.loads(second.stdout) == ["neutral"] * n
    finally:
        endpoint.stop()

    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    keys = [line["key"] for line in lines]
    assert len(keys) == len(set(keys)) == n, "each rating is recorded exactly once"
    asked_again = endpoint.prompts[asked_before_kill:]
    # the second run asks only what the first did not record; at most the requests in flight at
    # the kill (2 workers) were paid twice
    assert len(asked_again) == n - len(cached_before_kill)
    assert len(endpoint.prompts) - n <= 2
