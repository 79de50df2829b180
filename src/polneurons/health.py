"""Generation health: is the text a stance score is computed on an answer at all?

A base model under the bare prompt format may answer with nothing, ramble until max_new_tokens,
loop over one phrase, or echo the answer template ("Instruction: ..."); the judge then rates (or
fails on) the failure, not a stance. Per run and test set, `health_record` gives the share of
answers of each failure kind and the judge's error share, `health_flags` the shares above their
thresholds (config key `health`), and `undefined_reason` says why a score S has no rated answer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from polneurons.metrics import stance_counts

# failure kind -> the config key of its threshold (a share of a test set's answers)
THRESHOLDS = {
    "empty": "max_empty_share",
    "truncated": "max_truncated_share",
    "repetitive": "max_repetitive_share",
    "echo": "max_echo_share",
    "judge_error": "max_judge_error_share",
}
WHAT = {
    "empty": "empty",
    "truncated": "cut off at max_new_tokens",
    "repetitive": "repeating a phrase",
    "echo": "echoing the prompt template",
    "judge_error": "not rated by the judge",
}
# a line of the answer template ("Instruction: {}") copied into an answer
TEMPLATE_LINE = re.compile(r"^\s*(instruction|response|answer|question)\s*:", re.I | re.M)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def is_empty(response: str) -> bool:
    return not response.strip()


def is_truncated(n_new_tokens: int | None, max_new_tokens: int) -> bool | None:
    """The answer used every token it was allowed without ending (None: count not recorded)."""
    return None if n_new_tokens is None else n_new_tokens >= max_new_tokens


def is_repetitive(response: str, ngram: int, min_count: int) -> bool:
    """Some run of `ngram` words occurs at least `min_count` times in the answer."""
    counts = Counter(_ngrams(_words(response), ngram))
    return bool(counts) and max(counts.values()) >= min_count


def echoes_template(response: str, prompt: str, instruction: str, echo_words: int) -> bool:
    """The answer starts a line like the template ("Instruction: ...") or copies `echo_words`
    consecutive words of the prompt's template text (the prompt without the instruction itself:
    restating the question or statement is a normal answer)."""
    if TEMPLATE_LINE.search(response):
        return True
    pieces = prompt.split(instruction) if instruction else [prompt]
    template = {g for piece in pieces for g in _ngrams(_words(piece), echo_words)}
    return any(g in template for g in _ngrams(_words(response), echo_words))


def answer_flags(row: Mapping, max_new_tokens: int, cfg: Mapping) -> dict[str, bool | None]:
    """The failure kinds of one rated answer (a ratings.jsonl row)."""
    response = row["response"]
    return {
        "empty": is_empty(response),
        "truncated": is_truncated(row.get("n_new_tokens"), max_new_tokens),
        "repetitive": is_repetitive(response, cfg["repeat_ngram"], cfg["repeat_min_count"]),
        "echo": echoes_template(
            response, row.get("prompt", ""), row.get("text", ""), cfg["echo_words"]
        ),
        "judge_error": stance_counts([row["rating"]])["n_error"] == 1,
    }


def _share(values: Sequence[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def health_record(rows: Sequence[Mapping], max_new_tokens: int, cfg: Mapping) -> list[dict]:
    """Per test set (in first-seen order, then "all"): answers, rated answers, the share of each
    failure kind (None where unknown: no token counts recorded) and the mean length in words."""
    by_set: dict[str, list[Mapping]] = {}
    for row in rows:
        by_set.setdefault(row["test_set"], []).append(row)
    by_set["all"] = list(rows)
    records = []
    for test_set, group in by_set.items():
        flags = [answer_flags(row, max_new_tokens, cfg) for row in group]
        counts = stance_counts([row["rating"] for row in group])
        records.append(
            {
                "test_set": test_set,
                "n": len(group),
                "n_rated": counts["n"] - counts["n_error"],
                "n_empty": sum(f["empty"] for f in flags),
                **{kind: _share([f[kind] for f in flags]) for kind in THRESHOLDS},
                "mean_words": (
                    sum(len(_words(row["response"])) for row in group) / len(group)
                    if group
                    else None
                ),
            }
        )
    return records


def health_flags(records: Sequence[Mapping], cfg: Mapping) -> list[dict]:
    """Each (test set, failure kind) whose share exceeds its threshold; the "all" row is a
    summary and is not flagged on its own."""
    flags = []
    for record in records:
        if record["test_set"] == "all":
            continue
        for kind, key in THRESHOLDS.items():
            share = record[kind]
            if share is not None and share > cfg[key]:
                flags.append(
                    {
                        "test_set": record["test_set"],
                        "kind": kind,
                        "share": share,
                        "count": round(share * record["n"]),
                        "n": record["n"],
                        "threshold": cfg[key],
                        "key": f"health.{key}",
                    }
                )
    return flags


def flag_message(run: str, flag: Mapping) -> str:
    """One line naming the run, the test set and the share."""
    return (
        f"{run}: {flag['test_set']}: {flag['count']} of {flag['n']} answers "
        f"{WHAT[flag['kind']]} (share {flag['share']:.2f} > {flag['key']} {flag['threshold']:g})"
    )


def sample_answers(
    rows: Sequence[Mapping], flags: Sequence[Mapping], max_new_tokens: int, cfg: Mapping
) -> list[dict]:
    """Up to cfg["samples"] answers of the flagged test sets, those showing a flagged kind first."""
    if not flags:
        return []
    kinds_of = {}
    for flag in flags:
        kinds_of.setdefault(flag["test_set"], set()).add(flag["kind"])
    showing, others = [], []
    for row in rows:
        kinds = kinds_of.get(row["test_set"])
        if kinds is None:
            continue
        found = sorted(k for k, v in answer_flags(row, max_new_tokens, cfg).items() if v)
        sample = {
            "test_set": row["test_set"],
            "id": row.get("id"),
            "flags": ",".join(found),
            "response": row["response"],
        }
        (showing if kinds & set(found) else others).append(sample)
    return (showing + others)[: cfg["samples"]]


def undefined_reason(n: int, n_rated: int, n_empty: int) -> str:
    """Why S has no value ("" when it has one): no answers, or none the judge could rate."""
    if n_rated > 0:
        return ""
    if n == 0:
        return "no answers"
    if n_empty:
        return f"no rated answers: {n_empty} of {n} empty"
    return f"no rated answers: {n} of {n} judge errors"
