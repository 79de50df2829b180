"""Data layer: pinned files, pairing, splits (method.md: Data)."""

import json

import pytest

from polneurons.data import (
    FILES,
    TOPICS,
    eval_set_path,
    fetch,
    load_eval_set,
    load_pairs,
    normalise_label,
    topic_pools,
    training_examples,
)
from polneurons.errors import DataError, IntegrityError
from polneurons.io import sha256_file


def test_the_recorded_pool_capacities_are_what_the_pinned_files_hold(mirror):
    from polneurons.data import NEUTRAL_OUTSIDE_EVAL, PAIRS_OUTSIDE_EVAL

    for topic in TOPICS:
        evaluation = {text.strip() for text in load_eval_set(mirror, topic)}
        outside = [p for p in load_pairs(mirror, topic) if p.instruction not in evaluation]
        assert PAIRS_OUTSIDE_EVAL[topic] == len(outside), topic
        assert NEUTRAL_OUTSIDE_EVAL[topic] == sum(p.neutral is not None for p in outside), topic
    from polneurons.data import EVAL_SET_SIZES, TEST_SETS

    assert {s: len(load_eval_set(mirror, s)) for s in TEST_SETS} == EVAL_SET_SIZES


def test_pool_problem_is_none_up_to_the_last_training_pair_then_names_the_topic():
    from polneurons.data import NEUTRAL_OUTSIDE_EVAL, PAIRS_OUTSIDE_EVAL, pool_problem

    topic = "race"
    sizes = dict(perplexity_texts=10**6, localize_prompts=0, judge_pairs=0, readout_pairs=0)
    fits = PAIRS_OUTSIDE_EVAL[topic] - NEUTRAL_OUTSIDE_EVAL[topic] - 1  # one training pair left
    assert pool_problem({**sizes, "loglik_pairs": fits}, [topic]) is None
    problem, fix = pool_problem({**sizes, "loglik_pairs": fits + 1}, [topic])
    assert topic in problem and "data.loglik_pairs" in fix
    # the readout pool counts like the others
    problem, fix = pool_problem({**sizes, "loglik_pairs": fits, "readout_pairs": 1}, [topic])
    assert topic in problem and "data.readout_pairs" in fix


def test_every_pinned_file_matches_the_mirror_checksums(mirror):
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel] = digest
    assert set(FILES) <= set(sums)
    for rel, digest in FILES.items():
        assert sums[rel] == digest


def test_fetch_from_mirror_verifies_and_writes_atomically(mirror, tmp_path):
    rel = eval_set_path("race")
    dest = tmp_path / "raw" / rel
    fetch(rel, dest, "http://unused.invalid/", str(mirror))
    assert sha256_file(dest) == FILES[rel]
    assert not list(dest.parent.glob(".*tmp"))


def test_fetch_refuses_a_mirror_file_with_other_bytes(mirror, tmp_path):
    rel = eval_set_path("race")
    fake = tmp_path / "mirror" / rel
    fake.parent.mkdir(parents=True)
    fake.write_bytes((mirror / rel).read_bytes().replace(b"race", b"RACE", 1))
    dest = tmp_path / "raw" / rel
    with pytest.raises(IntegrityError, match="sha256"):
        fetch(rel, dest, "http://unused.invalid/", str(tmp_path / "mirror"))
    assert not dest.exists()


def test_pairs_share_instructions_and_normalise_labels(mirror):
    pairs = load_pairs(mirror, "immigration")
    assert len(pairs) == 1079
    assert all(p.left and p.right and p.instruction for p in pairs)
    labels = {p.right_label for p in pairs}
    assert labels <= {"left leaning", "right leaning", "neutral", None}
    assert normalise_label("Right leaning") == "right leaning"
    assert normalise_label("Right to the City: ...") is None


def test_eval_sets_have_the_papers_sizes(mirror):
    sizes = {t: len(load_eval_set(mirror, t)) for t in (*TOPICS, "pct", "questionnaire")}
    assert sizes == {**dict.fromkeys(TOPICS, 100), "pct": 61, "questionnaire": 29}


def _sizes(**changes):
    sizes = dict(
        loglik_pairs=20,
        perplexity_texts=10,
        localize_prompts=0,
        judge_pairs=0,
        readout_pairs=0,
        holdout_eval=True,
    )
    return {**sizes, **changes}


def test_pools_keep_loglik_pairs_and_neutral_texts_out_of_training(mirror):
    pairs = load_pairs(mirror, "race")
    evals = load_eval_set(mirror, "race")
    pools = topic_pools(pairs, evals, sizes=_sizes(), seed=0)
    train = {p.index for p in pools.train}
    assert len(pools.loglik) == 20 and len(pools.perplexity) == 10
    assert not train & {p.index for p in pools.loglik}
    assert not {p.answer(lean) for p in pools.train for lean in ("left", "right")} & set(
        pools.perplexity
    )
    assert not {p.instruction for p in pools.train} & set(evals) and not pools.leaks
    kept = topic_pools(pairs, evals, sizes=_sizes(holdout_eval=False), seed=0)
    assert set(evals) <= {p.instruction for p in kept.train} and kept.leaks


def test_too_many_held_out_pairs_for_a_topic_is_refused_in_one_line(mirror):
    pairs, evals = load_pairs(mirror, "race"), load_eval_set(mirror, "race")
    with pytest.raises(DataError, match="too few") as err:
        topic_pools(pairs, evals, sizes=_sizes(judge_pairs=5000), seed=0)
    assert "data.judge_pairs" in str(err.value) and "\n" not in str(err.value)


def test_training_sample_is_seeded_and_label_filter_keeps_matching_labels(mirror):
    split = topic_pools(
        load_pairs(mirror, "science"),
        load_eval_set(mirror, "science"),
        sizes=_sizes(loglik_pairs=5, holdout_eval=False),
        seed=0,
    )
    a = training_examples(split, "right", n_examples=16, label_filter=False, seed=1)
    b = training_examples(split, "right", n_examples=16, label_filter=False, seed=1)
    assert [p.index for p in a] == [p.index for p in b] and len(a) == 16
    filtered = training_examples(split, "right", n_examples=None, label_filter=True, seed=0)
    assert filtered and all(p.right_label == "right leaning" for p in filtered)


def test_mismatched_left_right_files_are_refused(mirror, tmp_path):
    from polneurons.data import ideoinst_path

    for lean in ("left", "right"):
        rel = ideoinst_path("race", lean)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        records = json.loads((mirror / rel).read_text())
        if lean == "right":
            records = records[:-1]
        (tmp_path / rel).write_text(json.dumps(records))
    with pytest.raises(DataError, match="left vs"):
        load_pairs(tmp_path, "race")
