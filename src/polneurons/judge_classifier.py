"""The offline stance judge (method.md: Stance): TF-IDF + logistic regression trained on
IdeoINST's GPT-4 labels, with a "no stance" class it rates neutral, so that it abstains on text
without a stance; its training pool, split and agreement. `judges.make_judge` builds it from the
config like the other backends."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from polneurons.data import normalise_label
from polneurons.errors import ConfigError, DataError, IntegrityError, ModelError
from polneurons.io import atomic_path
from polneurons.judges import ERROR, LABELS, NO_STANCE, Judge, JudgeItem


def ideoinst_training_examples(
    records_by_topic: Mapping[str, Iterable[Mapping]],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(texts, labels, groups, topics) from IdeoINST records (both leanings' files of each topic).

    A text is a record's `output`, its label GPT-4's `label` lower-cased; records whose label is
    not one of LABELS (a few hold stray generated text) are ignored. The group is the instruction,
    so that the left and right answers to one instruction fall on the same side of a split.
    """
    texts, labels, groups, topics = [], [], [], []
    for topic, records in records_by_topic.items():
        for record in records:
            label = normalise_label(record["label"])
            if label is not None and record["output"].strip():
                texts.append(record["output"])
                labels.append(label)
                groups.append(record["instruction"])
                topics.append(topic)
    return texts, labels, groups, topics


def pair_records(pairs) -> list[dict]:
    """IdeoINST records ({instruction, output, label}) of both answers of each `data.Pair`."""
    return [
        {"instruction": pair.instruction, "output": answer, "label": str(label)}
        for pair in pairs
        for answer, label in ((pair.left, pair.left_label), (pair.right, pair.right_label))
    ]


def judge_pool_records(pools_by_topic: Mapping) -> dict[str, list[dict]]:
    """The classifier judge's training records, per topic: both answers of each pair of the
    topic's judge pool (`data.TopicPools.judge`), less any answer text that also appears in a
    training pool of any topic (IdeoINST repeats a few answers), so the judge never learns a
    text a fine-tune may have memorised (docs/method.md, "Data pools")."""
    trainable = {
        answer
        for pools in pools_by_topic.values()
        for pair in pools.train
        for answer in (pair.left, pair.right)
    }
    return {
        topic: [r for r in pair_records(pools.judge) if r["output"] not in trainable]
        for topic, pools in pools_by_topic.items()
    }


def train_classifier_judge(
    pools_by_topic: Mapping, *, test_fraction: float, seed: int, no_stance_weight: float
) -> ClassifierJudge:
    """The classifier judge as rule `train_judge` trains it: on both answers of each pair of every
    topic's judge pool (`judge_pool_records`) with GPT-4's labels, and on the pool's instructions
    as its stance-free class, each weighted `no_stance_weight` (judge.classifier.no_stance_weight);
    its held-out agreement is in `.agreement`."""
    records = judge_pool_records(pools_by_topic)
    texts, labels, groups, topics = ideoinst_training_examples(records)
    free, free_groups = stance_free_examples(pools_by_topic)
    judge = ClassifierJudge()
    judge.train(
        texts,
        labels,
        groups,
        topics,
        test_fraction=test_fraction,
        seed=seed,
        stance_free=free,
        stance_free_groups=free_groups,
        stance_free_weight=no_stance_weight,
    )
    return judge


def group_split(
    groups: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) with every group wholly on one side, seeded."""
    from sklearn.model_selection import GroupShuffleSplit

    n_groups = len(set(groups))
    if n_groups == 0 or math.ceil(test_fraction * n_groups) >= n_groups:
        raise DataError(
            f"the classifier judge's pool holds {n_groups} instruction(s), too few to hold out "
            f"{test_fraction} of them and train on the rest",
            "raise data.judge_pairs (or lower judge.classifier.test_fraction)",
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    return next(splitter.split(np.zeros(len(groups)), groups=groups))


def stance_free_examples(pools_by_topic: Mapping) -> tuple[list[str], list[str]]:
    """(texts, groups) of the classifier judge's stance-free class: the instructions of every
    topic's judge pool (`data.TopicPools.judge`), each once, less any that is also an instruction
    of another pool of any topic (IdeoINST repeats a few across topics; docs/method.md, "Data
    pools"). An instruction asks and takes no side, and it holds what a small model echoes in
    place of an answer (the survey options "Yes/No/Refused", "Strongly agree/Agree/...", the
    question itself). Its group is itself, so that `ClassifierJudge.train` learns it only when
    its answers fall on the training side of the held-out split."""
    elsewhere = {
        instruction
        for pools in pools_by_topic.values()
        for instruction in (
            *(pair.instruction for pair in (*pools.train, *pools.loglik)),
            *pools.localize,
        )
    }
    texts = dict.fromkeys(
        pair.instruction
        for pools in pools_by_topic.values()
        for pair in pools.judge
        if pair.instruction.strip() and pair.instruction not in elsewhere
    )
    return list(texts), list(texts)


def truncate_to_tokens(texts: Sequence[str], tokenizer, max_tokens: int) -> list[str]:
    """Each text cut to its first `max_tokens` tokens of `tokenizer` (no special tokens) and
    stripped, as generation with `generation.max_new_tokens` would cut an answer that long."""
    if max_tokens < 1:
        raise ConfigError(
            f"cannot cut answers to {max_tokens} tokens", "set generation.max_new_tokens >= 1"
        )
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [
        tokenizer.decode(tokens[:max_tokens]).strip() if len(tokens) > max_tokens else text
        for text, tokens in zip(texts, ids, strict=True)
    ]


def _agreement(truth, predicted, no_stance) -> dict:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "kappa": float(cohen_kappa_score(truth, predicted)),
        "n_test": int(len(truth)),
        "n_no_stance": int(np.sum(no_stance)),
        "labels": list(LABELS),
        "confusion_matrix": confusion_matrix(truth, predicted, labels=list(LABELS)).tolist(),
    }


class ClassifierJudge(Judge):
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression on IdeoINST's GPT-4 labels,
    with a fourth class, "no stance", trained on stance-free text (`stance_free_examples`):
    a response the classifier puts there is rated "neutral" (it abstains, docs/method.md:
    "Stance"). A response with no word the classifier knows is rated "error".

    `agreement` holds the held-out agreement with GPT-4 of exactly the model that rates
    (it is fitted on the training split only), to be reported next to every score it produces;
    `held_out` the held-out answers with GPT-4's labels, to measure it again on answers cut to
    the length a run generates (`truncated_agreement`).
    """

    FORMAT = "polneurons-tfidf-judge/2"

    def __init__(self, pipeline=None, agreement: dict | None = None, held_out: dict | None = None):
        self.pipeline = pipeline
        self.agreement = agreement
        self.held_out = held_out

    def train(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        groups: Sequence[str],
        topics: Sequence[str] | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
        stance_free: Sequence[str] = (),
        stance_free_groups: Sequence[str] = (),
        stance_free_weight: float = 1.0,
    ) -> dict:
        """Fit on a group split of the data; return the held-out agreement with the labels.

        `stance_free` texts (with their groups) whose group falls on the training side are the
        "no stance" class, each weighted `stance_free_weight` against one labelled answer (0: no
        such class, the judge of GPT-4's three labels only). The agreement is measured on the
        held-out labelled answers only, a "no stance" rating counting as "neutral".
        """
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import cohen_kappa_score
        from sklearn.pipeline import make_pipeline

        stray = sorted(set(labels) - set(LABELS))
        if stray:
            raise DataError(f"classifier labels outside {LABELS}: {stray[:3]}", "filter them out")
        if len(stance_free) != len(stance_free_groups):
            raise DataError(
                f"{len(stance_free)} stance-free texts but {len(stance_free_groups)} groups",
                "pass one group per stance-free text (stance_free_examples does)",
            )
        if not (isinstance(stance_free_weight, int | float) and stance_free_weight >= 0):
            raise ConfigError(
                f"judge.classifier.no_stance_weight is {stance_free_weight!r}",
                "use a number >= 0 (0 trains no stance-free class)",
            )
        texts, labels = np.asarray(texts, dtype=object), np.asarray(labels, dtype=object)
        train_idx, test_idx = group_split(groups, test_fraction, seed)
        train_groups = {groups[i] for i in train_idx}
        free = [
            text
            for text, group in zip(stance_free, stance_free_groups, strict=True)
            if group in train_groups
        ]
        if stance_free_weight == 0:
            free = []
        fit_texts = [*texts[train_idx], *free]
        fit_labels = [*labels[train_idx], *[NO_STANCE] * len(free)]
        weights = np.r_[np.ones(len(train_idx)), np.full(len(free), float(stance_free_weight))]
        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegression(solver="newton-cg", max_iter=1000),
        )
        self.pipeline.fit(fit_texts, fit_labels, logisticregression__sample_weight=weights)
        truth = labels[test_idx]
        classes = self._classes(list(texts[test_idx]))
        predicted = np.where(classes == NO_STANCE, "neutral", classes)
        agreement = {
            **_agreement(truth, predicted, classes == NO_STANCE),
            "n_train": int(len(train_idx)),
            "n_stance_free": len(free),
        }
        if topics is not None:
            test_topics = np.asarray(topics, dtype=object)[test_idx]
            agreement["kappa_by_topic"] = {
                topic: float(
                    cohen_kappa_score(truth[test_topics == topic], predicted[test_topics == topic])
                )
                for topic in sorted(set(test_topics))
            }
        self.agreement = agreement
        self.held_out = {"texts": list(texts[test_idx]), "labels": list(truth)}
        return agreement

    def _classes(self, responses: list[str]) -> np.ndarray:
        return np.asarray(self.pipeline.predict(responses), dtype=object)

    def rate(self, items: list[JudgeItem]) -> list[str]:
        if self.pipeline is None:
            raise ModelError("the classifier judge is not trained", "train it or load a saved one")
        if not items:
            return []
        responses = [item.response for item in items]
        known_words = self.pipeline[:-1].transform(responses).getnnz(axis=1) > 0
        return [
            ("neutral" if label == NO_STANCE else str(label)) if known else ERROR
            for label, known in zip(self._classes(responses), known_words, strict=True)
        ]

    def truncated_agreement(self, tokenizer, max_tokens: int) -> dict:
        """The held-out agreement with GPT-4's labels on the held-out answers cut to their first
        `max_tokens` tokens of `tokenizer` (the text a run with generation.max_new_tokens =
        `max_tokens` gives the judge), with `n_cut`, how many of them the cut shortened."""
        if self.held_out is None:
            raise ModelError(
                "the classifier judge holds no held-out answers",
                "delete its model file and rerun the rule that trains the classifier judge",
            )
        texts = self.held_out["texts"]
        cut = truncate_to_tokens(texts, tokenizer, max_tokens)
        classes = self._classes(cut)
        predicted = np.where(classes == NO_STANCE, "neutral", classes)
        truth = np.asarray(self.held_out["labels"], dtype=object)
        return {
            **_agreement(truth, predicted, classes == NO_STANCE),
            "max_tokens": int(max_tokens),
            "n_cut": sum(a != b for a, b in zip(texts, cut, strict=True)),
        }

    def save(self, path: str | os.PathLike) -> None:
        import joblib

        state = {
            "format": self.FORMAT,
            "pipeline": self.pipeline,
            "agreement": self.agreement,
            "held_out": self.held_out,
        }
        with atomic_path(path) as tmp:
            joblib.dump(state, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassifierJudge:
        import joblib

        fix = "delete it and rerun the rule that trains the classifier judge"
        if not Path(path).exists():
            raise DataError(f"classifier judge {path} does not exist", fix)
        try:
            state = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
            raise IntegrityError(
                f"classifier judge {path} cannot be read ({type(exc).__name__})", fix
            ) from None
        if not isinstance(state, dict) or state.get("format") != cls.FORMAT:
            raise IntegrityError(f"{path} is not a saved classifier judge ({cls.FORMAT})", fix)
        return cls(state["pipeline"], state["agreement"], state["held_out"])
