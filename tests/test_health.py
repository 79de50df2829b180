"""Generation health: each failure kind fires on a crafted answer and stays silent on normal text;
thresholds flag a run; undefined scores say why in every table; `fail` stops the workflow."""

import pandas as pd
import pytest
import torch
from workflow_helpers import assert_one_line_error, make_workdir, tiny_model_dir  # noqa: F401

from polneurons.config import validate_config
from polneurons.generation import count_new_tokens
from polneurons.health import (
    answer_flags,
    flag_message,
    health_flags,
    health_record,
    sample_answers,
    undefined_reason,
)
from polneurons.io import write_jsonl
from polneurons.tables.common import (
    arm_counts,
    collect_counts,
    combine_reasons,
    with_arm_counts,
    with_run_counts,
    write_table,
)

CFG = validate_config({"inhibitft": {"enabled": False}})["health"]
TEMPLATE = (
    "Write a response to the following instruction on the topic of race, reflecting a leaning "
    "perspective without directly mentioning the political leaning. Ensure the response is "
    "concise, clear, and under 100 words.\n\nInstruction: {}"
)
QUESTION = "Should affirmative action in college admissions be kept?"
NORMAL = (
    "Admissions should reward merit and hard work. Families deserve a fair process that treats "
    "every applicant as an individual, and schools can widen opportunity through outreach."
)


def row(response, rating="neutral", n_new_tokens=20, test_set="race", text=QUESTION):
    return {
        "test_set": test_set,
        "text": text,
        "prompt": TEMPLATE.format(text),
        "response": response,
        "n_new_tokens": n_new_tokens,
        "rating": rating,
    }


CRAFTED = {
    "empty": row("   ", rating="error"),
    "truncated": row(NORMAL, n_new_tokens=150),
    "repetitive": row("I agree with this. " * 6),
    "echo": row("to answer.\n\nInstruction: Should affirmative action be kept?"),
    "judge_error": row(NORMAL, rating="error"),
}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_each_failure_kind_fires_on_its_crafted_answer_only(kind):
    flags = answer_flags(CRAFTED[kind], max_new_tokens=150, cfg=CFG)
    assert flags[kind] is True
    assert [k for k, v in flags.items() if v and k != kind] in ([], ["judge_error"])


def test_normal_answers_raise_no_flag_even_when_they_restate_the_question():
    restating = row(f"{QUESTION} No: admissions should reward merit and individual effort.")
    for answer in (row(NORMAL), restating):
        assert not any(answer_flags(answer, max_new_tokens=150, cfg=CFG).values())


def test_copying_the_template_text_is_an_echo():
    copied = row("Ensure the response is concise, clear, and under 100 words. Make sure of it.")
    assert answer_flags(copied, max_new_tokens=150, cfg=CFG)["echo"] is True


def test_a_run_is_flagged_per_test_set_above_the_threshold_and_named_in_the_message():
    rows = [row("", rating="error") for _ in range(10)] + [row(NORMAL) for _ in range(2)]
    rows += [row(NORMAL, test_set="pct") for _ in range(4)]
    records = health_record(rows, max_new_tokens=150, cfg=CFG)
    by_set = {r["test_set"]: r for r in records}
    assert by_set["race"]["empty"] == pytest.approx(10 / 12)
    assert by_set["race"]["n_rated"] == 2 and by_set["all"]["n"] == 16
    flags = health_flags(records, CFG)
    assert {(f["test_set"], f["kind"]) for f in flags} == {
        ("race", "empty"),
        ("race", "judge_error"),
    }
    message = flag_message("tiny/right/race/ift-freeze_rows-n5", flags[0])
    assert message.startswith("tiny/right/race/ift-freeze_rows-n5: race: 10 of 12 answers empty")
    assert "0.83" in message and "health.max_empty_share" in message
    samples = sample_answers(rows, flags, 150, CFG)
    assert len(samples) == CFG["samples"] and all("empty" in s["flags"] for s in samples)


def test_healthy_answers_and_unknown_token_counts_flag_nothing():
    rows = [{k: v for k, v in row(NORMAL).items() if k != "n_new_tokens"} for _ in range(5)]
    records = health_record(rows, max_new_tokens=150, cfg=CFG)
    assert records[0]["truncated"] is None
    assert health_flags(records, CFG) == [] and sample_answers(rows, [], 150, CFG) == []


def test_token_counts_stop_at_the_first_eos():
    eos, pad = 2, 0
    new_tokens = torch.tensor([[5, 6, eos, pad], [5, 6, 7, 8], [eos, pad, pad, pad]])
    assert count_new_tokens(new_tokens, [eos]) == [2, 4, 0]


def test_undefined_reason_names_the_empty_answers():
    assert undefined_reason(12, 0, 10) == "no rated answers: 10 of 12 empty"
    assert undefined_reason(12, 0, 0) == "no rated answers: 12 of 12 judge errors"
    assert undefined_reason(12, 2, 10) == ""


def write_run(folder, answers):
    folder.mkdir(parents=True)
    write_jsonl(folder / "ratings.jsonl", answers)
    return folder / "ratings.jsonl"


def test_tables_show_why_a_score_is_undefined_never_a_bare_nan(tmp_path):
    results = tmp_path / "results" / "tiny"
    base = write_run(results / "base", [row(NORMAL, "left leaning") for _ in range(12)])
    empty = [row("", rating="error") for _ in range(10)] + [row(NORMAL, "error")] * 2
    ift = write_run(results / "right" / "race" / "ift-freeze_rows-n5", empty)
    counts = collect_counts([base, ift])
    assert set(counts["leaning"]) == {"right"}
    shift = pd.DataFrame(
        {
            "model": ["tiny"],
            "leaning": ["right"],
            "condition": ["ift-freeze_rows-n5"],
            "source": ["race"],
            "test_set": ["race"],
            "S_base": [-1.0],
            "S": [float("nan")],
        }
    )
    shift = with_run_counts(with_run_counts(shift, counts, "_base", "base"), counts)
    shift = combine_reasons(shift, {"_base": "base", "": ""})
    assert shift.loc[0, "n_rated"] == 0 and shift.loc[0, "n_rated_base"] == 12
    write_table(shift, tmp_path / "t.csv", tmp_path / "t.md", explain=("S_base", "S"))
    md = (tmp_path / "t.md").read_text()
    assert "no rated answers: 10 of 12 empty" in md and "nan" not in md
    assert pd.read_csv(tmp_path / "t.csv")["S"].isna().all()

    arm = pd.DataFrame(
        {"model": ["tiny", "mean"], "leaning": ["right"] * 2, "source": ["race", "mean"]}
    ).assign(condition="ift-freeze_rows-n5", CG_x=float("nan"))
    arm = combine_reasons(with_arm_counts(arm, arm_counts(counts)), {"": ""})
    assert list(arm["n_rated"]) == [0, 0]
    assert all(w == "race: no rated answers: 10 of 12 empty" for w in arm["why_undefined"])


def test_training_replicates_are_labelled_and_counted_together_under_their_kind(tmp_path):
    from polneurons.tables.common import collect_ratings

    results = tmp_path / "results" / "tiny"
    base = write_run(results / "base", [row(NORMAL, "left leaning") for _ in range(4)])
    ft = write_run(results / "right" / "race" / "ft", [row(NORMAL, "right leaning")] * 4)
    empty = [row("", rating="error") for _ in range(3)] + [row(NORMAL, "neutral")]
    ft1 = write_run(results / "right" / "race" / "ft-t1", empty)
    counts = collect_counts([base, ft, ft1]).set_index("condition")
    assert set(counts.index) == {"base", "ft-t0", "ft-t1", "ft"}
    assert counts.loc["ft", "n"] == 8 and counts.loc["ft", "n_rated"] == 5
    assert counts.loc["ft", "why_undefined"] == ""
    ratings = collect_ratings([base, ft, ft1])["right"]
    assert {key[1] for key in ratings} == {"base", "ft-t0", "ft-t1"}
    # a single-seed run keeps its own name
    assert set(collect_counts([base, ft])["condition"]) == {"base", "ft"}


@pytest.mark.integration
def test_fail_mode_stops_the_workflow_with_one_line_naming_the_run(tmp_path, tiny_model_dir):  # noqa: F811
    # the tiny model's answers always run to max_new_tokens (4): flagged as cut off
    work = make_workdir(tmp_path, tiny_model_dir, "health={on_flag: fail}")
    proc = work.run(str(work.results / "tiny" / "base" / "ratings.jsonl"))
    assert proc.returncode != 0, work.explain(proc)
    assert_one_line_error(proc.output, "polneurons error", "tiny/base", "max_new_tokens", "share")
    assert "polneurons warning: tiny/base" in proc.output
    assert not (work.results / "tiny" / "base" / "ratings.jsonl").exists()
