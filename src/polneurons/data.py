"""The public inputs: pinned downloads verified by sha256, and loaders that refuse malformed data (method.md: Data)."""

from __future__ import annotations

import json
import random
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from polneurons.errors import ConfigError, DataError, EnvironmentProblem, IntegrityError
from polneurons.io import atomic_path, sha256_file

TOPICS = (
    "crime_and_gun",
    "race",
    "science",
    "immigration",
    "economy_and_inequality",
    "gender_and_sexuality",
)
EXTRA_SETS = ("pct", "questionnaire")
TEST_SETS = TOPICS + EXTRA_SETS
LEANINGS = ("left", "right")
LABELS = ("left leaning", "right leaning", "neutral")

IDEOINST = "kaichen23/llm_ideo_manipulate/0985e28da5002d7365dcaae2b9af4f63a423b03d"
AUTHORS = "007zzZZZ/political-stance/1d4cc770d9801f81735cfcaacc29f2459e1e52f1"

# Every file the workflow downloads, pinned to a commit, with its sha256 (method.md: Data).
FILES: dict[str, str] = {
    f"{AUTHORS}/autodl-tmp/dataset_100/crime_and_gun.json": "2a2519590aa8e5e52fe5749852ef367350844b16b249f71204b572216d9a4816",
    f"{AUTHORS}/autodl-tmp/dataset_100/dataset2.json": "ccceb9bfd5fc55f521d2d66380dd628511438af223112d7fd8f09cfb8050480f",
    f"{AUTHORS}/autodl-tmp/dataset_100/dataset3.json": "7e295ea9b2f90d8715de5e24e9b32d142ab5bbcfa9371dda8500066adfe7bedf",
    f"{AUTHORS}/autodl-tmp/dataset_100/economy_and_inequality.json": "108dcb01feed86c1a929e5dfd6e4d6caaa79516e92d682fa05b317a0bef8c123",
    f"{AUTHORS}/autodl-tmp/dataset_100/gender_and_sexuality.json": "452b0a9435c0222069d38f20b4cc9e1c32e4948bd9d3e599622faf1d0f8a3668",
    f"{AUTHORS}/autodl-tmp/dataset_100/immigration.json": "9445db0905e114ceb17cd95a90e573d0bd3a3a02eaf0152f8873ea0ba38bdcc8",
    f"{AUTHORS}/autodl-tmp/dataset_100/race.json": "4be81cfe2185866f912d61f0f30117f5a454529ccd94d0a0e5908d0c50d80e0d",
    f"{AUTHORS}/autodl-tmp/dataset_100/science.json": "dbc4a59079058ac9fa9d83cfc882ec3dc222f33b3437e5cf96b50b832d91064a",
    f"{AUTHORS}/autodl-tmp/prompt/answer_prompt.txt": "048362d41b6265bca4652980ac1c9085adda95213ed861597cbf25274ec307f5",
    f"{AUTHORS}/autodl-tmp/prompt/answer_prompt2.txt": "a41ae67bd284bb6972fee6d598f65ab765479a639bd5b43695b0641e9b5db4e4",
    f"{AUTHORS}/autodl-tmp/prompt/prompt_evaluation.txt": "96211a86721459026ca7c5148f856eb86fcb53f852833495b2a27f16478e6a1e",
    f"{AUTHORS}/autodl-tmp/prompt/prompt_evaluation2.txt": "83f1ba7b5aec395b1f438682963ede53638c8e69ba56a55c136b184c8d610cb3",
    f"{IDEOINST}/LICENSE": "2e959c580f2ac80d83296534e298bab903bd980d11538b3c19213512b1c7cd18",
    f"{IDEOINST}/data/IdeoINST/crime_and_gun/left/crime_and_gun_left_eval.json": "7fee1a6a70e4fbe5bbeb4903e9e3ed062ed484f1c039be2b66c429831594fd19",
    f"{IDEOINST}/data/IdeoINST/crime_and_gun/right/crime_and_gun_right_eval.json": "6b2d358d86b2e8c0ef47a87324635cbcd92984a24972ae9751d8efb73e349bb2",
    f"{IDEOINST}/data/IdeoINST/economy_and_inequality/left/economy_and_inequality_left_eval.json": "aef5c1c19b28aa4cebf91c8718407a1e9e701297a358d08906217353afbf77bc",
    f"{IDEOINST}/data/IdeoINST/economy_and_inequality/right/economy_and_inequality_right_eval.json": "7a94e37c4d9b1315ea13147863168ce4f562c34fd37e0572a799baf3e1178fba",
    f"{IDEOINST}/data/IdeoINST/gender_and_sexuality/left/gender_and_sexuality_left_eval.json": "6b150972c6fd1b1d98addc58d93f2b151f9eb7e79002c32d0c50b49eb323c0fb",
    f"{IDEOINST}/data/IdeoINST/gender_and_sexuality/right/gender_and_sexuality_right_eval.json": "7b1c91d439a63e5d9d5c83fe4d664450f83e555f6e4a421eadf35758e886aae9",
    f"{IDEOINST}/data/IdeoINST/immigration/left/immigration_left_eval.json": "38d2c9fec665eb4804751ca7020ef4e65d934e2b6fbeab8f56e0eba6896e16e5",
    f"{IDEOINST}/data/IdeoINST/immigration/right/immigration_right_eval.json": "4925be7019633bdc65657bfebe45aac6c0d157fa39a078d4906e5a8b7563dbae",
    f"{IDEOINST}/data/IdeoINST/race/left/race_left_eval.json": "eb5fc5097fb87e5733f814da4516f685aa4b4b287a5ae1b948337662ffa1eaec",
    f"{IDEOINST}/data/IdeoINST/race/right/race_right_eval.json": "a74e2e78a3044d258a659acd9c2d20fb839ee9f329a023d711c0efb0ef62b44d",
    f"{IDEOINST}/data/IdeoINST/science/left/science_left_eval.json": "677c4dcffdad92e0a77faf2c87f0795c316f4c2e8ff327a91e134c3b1f0c1b25",
    f"{IDEOINST}/data/IdeoINST/science/right/science_right_eval.json": "ada7d3a0c4f823a2424a8b454e711a20b8c8dfaea1b45870ac77f00bfb810309",
}


def ideoinst_path(topic: str, leaning: str) -> str:
    return f"{IDEOINST}/data/IdeoINST/{topic}/{leaning}/{topic}_{leaning}_eval.json"


def eval_set_path(test_set: str) -> str:
    name = {"pct": "dataset2", "questionnaire": "dataset3"}.get(test_set, test_set)
    return f"{AUTHORS}/autodl-tmp/dataset_100/{name}.json"


def template_path(name: str) -> str:
    return f"{AUTHORS}/autodl-tmp/prompt/{name}.txt"


# ---------------------------------------------------------------- download


def fetch(rel: str, dest: Path, base_url: str, mirror: str | None, timeout: float = 60) -> None:
    """Copy one pinned file from the mirror folder or download it, verify its sha256, write atomically."""
    expected = FILES[rel]
    with atomic_path(dest) as tmp:
        if mirror:
            src = Path(mirror) / rel
            if not src.is_file():
                raise DataError(
                    f"{src} is missing from the data mirror {mirror}",
                    "point data.mirror at a complete copy laid out as <owner>/<repo>/<commit>/<path> "
                    "(see method.md: Data), or set data.mirror: null to download",
                )
            shutil.copyfile(src, tmp)
        else:
            url = base_url.rstrip("/") + "/" + rel
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise EnvironmentProblem(
                    f"cannot download {url} ({reason})",
                    "check the network, or work offline with "
                    "--config 'data={mirror: /path/to/political_stance_data}' "
                    "(a folder laid out like the raw URLs), or set data.base_url",
                ) from None
        got = sha256_file(tmp)
        if got != expected:
            raise IntegrityError(
                f"{rel} has sha256 {got[:12]}..., expected {expected[:12]}... (corrupt or wrong version)",
                "check data.base_url / data.mirror; the files are pinned to the commits in docs/method.md",
            )


# ---------------------------------------------------------------- loaders


def _load_json_list(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"{path} is missing", "rerun the workflow so download_data fetches it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc})", "delete it so download_data fetches it again"
        ) from None
    if not isinstance(data, list) or not data:
        what = "an empty list" if data == [] else f"a JSON {type(data).__name__}, not a list"
        raise DataError(
            f"{path} holds {what} (no records)", "delete it so download_data fetches it again"
        )
    return data


def normalise_label(label: str) -> str | None:
    """GPT-4's rating as one of LABELS ('Right leaning' -> 'right leaning'); anything else -> None."""
    norm = " ".join(str(label).strip().lower().split())
    return norm if norm in LABELS else None


@dataclass(frozen=True)
class Pair:
    """One IdeoINST instruction with its left and right answers and GPT-4's labels of each."""

    topic: str
    index: int
    instruction: str
    left: str
    right: str
    left_label: str | None
    right_label: str | None

    def answer(self, leaning: str) -> str:
        return self.left if leaning == "left" else self.right

    def label(self, leaning: str) -> str | None:
        return self.left_label if leaning == "left" else self.right_label

    @property
    def neutral(self) -> str | None:
        """The answer GPT-4 labelled neutral (the left one if both are), or None."""
        if "neutral" not in (self.left_label, self.right_label):
            return None
        return self.left if self.left_label == "neutral" else self.right


def load_pairs(data_dir: str | Path, topic: str) -> list[Pair]:
    """IdeoINST's left and right files of a topic, checked to pair the same instructions in order."""
    data_dir = Path(data_dir)
    sides = {}
    for lean in LEANINGS:
        path = data_dir / ideoinst_path(topic, lean)
        records = _load_json_list(path)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise DataError(
                    f"{path} record {i} is not an object with instruction/output/label",
                    "delete the file so download_data fetches the pinned version",
                )
            missing = [key for key in ("instruction", "output", "label") if key not in rec]
            wrong = [
                key
                for key in ("instruction", "input", "output")
                if rec.get(key) is not None and not isinstance(rec[key], str)
            ]
            if missing or wrong:
                what = (
                    f"lacks {', '.join(missing)}" if missing else f"has non-text {', '.join(wrong)}"
                )
                raise DataError(
                    f"{path} record {i} {what}",
                    "delete the file so download_data fetches the pinned version",
                )
        sides[lean] = records
    left, right = sides["left"], sides["right"]
    if len(left) != len(right):
        raise DataError(
            f"IdeoINST {topic}: {len(left)} left vs {len(right)} right records "
            f"({data_dir / ideoinst_path(topic, 'left')})",
            "the left and right files must pair the same instructions; re-download them",
        )
    pairs = []
    for i, (lrec, rrec) in enumerate(zip(left, right, strict=True)):
        if lrec["instruction"].strip() != rrec["instruction"].strip():
            raise DataError(
                f"IdeoINST {topic}: record {i} has different instructions on the left and right",
                "the files must pair the same instructions in the same order; re-download them",
            )
        instr = lrec["instruction"].strip()
        if lrec.get("input"):
            instr = f"{instr}\n{lrec['input'].strip()}"
        pairs.append(
            Pair(
                topic=topic,
                index=i,
                instruction=instr,
                left=str(lrec["output"]).strip(),
                right=str(rrec["output"]).strip(),
                left_label=normalise_label(lrec["label"]),
                right_label=normalise_label(rrec["label"]),
            )
        )
    return pairs


def load_eval_set(data_dir: str | Path, test_set: str) -> list[str]:
    """The evaluation instructions (six topics: 100 each) or statements (pct: 61, questionnaire: 29)."""
    path = Path(data_dir) / eval_set_path(test_set)
    items = _load_json_list(path)
    if not all(isinstance(x, str) and x.strip() for x in items):
        raise DataError(f"{path} holds non-string or empty items", "re-download it")
    return [x.strip() for x in items]


def load_template(data_dir: str | Path, name: str) -> str:
    path = Path(data_dir) / template_path(name)
    if not path.is_file():
        raise DataError(f"{path} is missing", "rerun the workflow so download_data fetches it")
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- splits (method.md: Data)


@dataclass(frozen=True)
class TopicPools:
    """The disjoint uses of one topic's IdeoINST pairs (docs/method.md, "Data pools"):

    - `train`: what a fine-tune on the topic samples its examples from;
    - `loglik`: pairs of the judge-free log-likelihood stance S_ll;
    - `perplexity`: neutral-labelled answers, the perplexity texts (never trained on);
    - `localize`: instructions the neurons are localized on (`neurons.localize_prompts:
      held_out`; empty with `same_as_eval`, which localizes on the evaluation prompts);
    - `judge`: pairs whose two answers train the classifier judge;
    - `readout`: pairs of the teacher-forced causal readout of patched neuron sets.

    The evaluation instructions (the authors' `dataset_100`) are never in loglik, perplexity,
    localize or judge; they are in `train` only with `data.holdout_eval: false` (the paper's
    leak, kept for fidelity and named in `leaks`).
    """

    train: list[Pair]
    loglik: list[Pair]
    perplexity: list[str]
    localize: list[str]
    judge: list[Pair]
    readout: list[Pair] = field(default_factory=list)
    leaks: tuple[str, ...] = ()


POOL_SIZES = (
    "loglik_pairs",
    "perplexity_texts",
    "localize_prompts",
    "judge_pairs",
    "readout_pairs",
)

# What the pinned files hold per topic (FILES fixes them; tests/test_data.py recounts them on
# the data): IdeoINST pairs outside the evaluation instructions, and how many of those have a
# neutral-labelled answer. The pools are cut from these (topic_pools), so a config that asks
# for more than a topic has is refused at parse time (pool_problem), not by a job.
PAIRS_OUTSIDE_EVAL = {
    "crime_and_gun": 1022,
    "race": 1063,
    "science": 1077,
    "immigration": 979,
    "economy_and_inequality": 1005,
    "gender_and_sexuality": 1074,
}
# prompts of each evaluation set (the authors' dataset_100 per topic, pct, questionnaire)
EVAL_SET_SIZES = {**dict.fromkeys(TOPICS, 100), "pct": 61, "questionnaire": 29}
NEUTRAL_OUTSIDE_EVAL = {
    "crime_and_gun": 118,
    "race": 460,
    "science": 745,
    "immigration": 119,
    "economy_and_inequality": 99,
    "gender_and_sexuality": 528,
}


def pool_problem(sizes: dict, topics) -> tuple[str, str] | None:
    """(problem, fix) if the pools `sizes` asks for (config.pool_sizes) leave a topic's training
    pool empty, else None: loglik, localization and judge pairs, and the perplexity texts (at
    most the topic's neutral answers), are cut before what remains is trained on."""
    for topic in topics:
        held = (
            sizes["loglik_pairs"]
            + min(sizes["perplexity_texts"], NEUTRAL_OUTSIDE_EVAL[topic])
            + sizes["localize_prompts"]
            + sizes["judge_pairs"]
            + sizes["readout_pairs"]
        )
        if held >= PAIRS_OUTSIDE_EVAL[topic]:
            return (
                f"the held-out pools of {topic} take {held} of its {PAIRS_OUTSIDE_EVAL[topic]} "
                "pairs outside the evaluation set (data.loglik_pairs, perplexity.texts, the "
                "localization prompts, data.judge_pairs, data.readout_pairs), leaving no "
                "training pool",
                "lower data.loglik_pairs, data.judge_pairs or data.readout_pairs (or "
                "data.eval_prompts, which sizes "
                "the held-out localization prompts)",
            )
    return None


def repeated_texts(pairs_by_topic) -> frozenset[str]:
    """Instructions and answers that occur in more than one pair of IdeoINST (any topics): a
    pool that must stay disjoint from every other whatever the topic keeps none of them."""
    from collections import Counter

    counts = Counter(
        text for pairs in pairs_by_topic for p in pairs for text in (p.instruction, p.left, p.right)
    )
    return frozenset(text for text, n in counts.items() if n > 1)


def topic_pools(
    pairs: list[Pair],
    eval_instructions: list[str],
    *,
    sizes: dict,
    seed: int,
    repeated: frozenset[str] = frozenset(),
) -> TopicPools:
    """Every split of one topic, from one seeded shuffle of the pairs outside the evaluation set.

    `sizes` (see `pool_sizes`): `loglik_pairs`, `perplexity_texts`, `localize_prompts`,
    `judge_pairs` and `readout_pairs` per topic, and `holdout_eval`. In that order each pool
    takes the next pairs of the shuffle (perplexity: the next neutral-labelled answers; readout:
    the next pairs none of whose texts is in `repeated`); the rest is the training pool.
    DataError when the topic has too few pairs for the sizes asked.
    """
    eval_set = {e.strip() for e in eval_instructions}
    outside = [p for p in pairs if p.instruction not in eval_set]
    inside = [p for p in pairs if p.instruction in eval_set]
    rng = random.Random(f"{seed}-{pairs[0].topic if pairs else ''}")
    rng.shuffle(outside)
    loglik, rest = outside[: sizes["loglik_pairs"]], outside[sizes["loglik_pairs"] :]
    neutral = [p for p in rest if p.neutral is not None]
    neutral = neutral[: sizes["perplexity_texts"]]
    held = {p.index for p in neutral}
    rest = [p for p in rest if p.index not in held]
    n_localize, n_judge = sizes["localize_prompts"], sizes["judge_pairs"]
    n_readout = sizes["readout_pairs"]
    localize, judge = rest[:n_localize], rest[n_localize : n_localize + n_judge]
    rest = rest[n_localize + n_judge :]
    # after every other pool (with no readout, each pool is what it was without it), and
    # only pairs none of whose texts occurs in another pair (`repeated`, any topic)
    unique = [p for p in rest if not {p.instruction, p.left, p.right} & repeated]
    readout = unique[:n_readout]
    taken = {p.index for p in readout}
    rest = [p for p in rest if p.index not in taken]
    if len(localize) < n_localize or len(judge) < n_judge or len(readout) < n_readout or not rest:
        topic = pairs[0].topic if pairs else "?"
        raise DataError(
            f"IdeoINST {topic} has {len(outside)} pairs outside the evaluation set, too few for "
            f"{sizes['loglik_pairs']} log-likelihood pairs, {n_localize} localization prompts, "
            f"{n_judge} judge pairs, {n_readout} readout pairs and a training pool",
            "lower data.loglik_pairs, data.judge_pairs, data.readout_pairs or the localization "
            "prompts",
        )
    train = rest + ([] if sizes["holdout_eval"] else inside)
    return TopicPools(
        train=sorted(train, key=lambda p: p.index),
        loglik=loglik,
        perplexity=[p.neutral for p in neutral],
        localize=[p.instruction for p in localize],
        judge=judge,
        readout=readout,
        leaks=() if sizes["holdout_eval"] else ("evaluation instructions are trained on",),
    )


def training_examples(
    split: TopicPools, leaning: str, *, n_examples: int | None, label_filter: bool, seed: int
) -> list[Pair]:
    """The training pairs of one (topic, leaning): optionally only those GPT-4 labelled with the
    leaning, optionally a seeded subsample of n_examples."""
    pool = [p for p in split.train if not label_filter or p.label(leaning) == f"{leaning} leaning"]
    if not pool:
        raise DataError(
            f"no training examples left for {leaning} on this topic",
            "turn off data.label_filter or raise the number of examples",
        )
    if n_examples is not None and n_examples < len(pool):
        pool = random.Random(seed).sample(pool, n_examples)
    return pool


def neutral_answers(split: TopicPools) -> list[tuple[str, str]]:
    """(instruction, answer) of every neutral-labelled answer in a topic's training pool (the
    perplexity texts are already outside it)."""
    return [(p.instruction, p.neutral) for p in split.train if p.neutral is not None]


def null_examples(
    splits: dict[str, TopicPools], topic: str, n_examples: int, seed: int
) -> tuple[list[tuple[str, str]], str]:
    """The examples of the null fine-tune (method.md: PNLAC): n_examples neutral-labelled
    answers of `topic`'s training pool, or, where it holds fewer, of every topic's training pool
    pooled; with where they came from ("topic" or "pooled")."""
    pool, source = neutral_answers(splits[topic]), "topic"
    if len(pool) < n_examples:
        pool = [answer for t in sorted(splits) for answer in neutral_answers(splits[t])]
        source = "pooled"
    if len(pool) < n_examples:
        raise DataError(
            f"only {len(pool)} neutral-labelled training answers over all topics, the null "
            f"fine-tune needs {n_examples}",
            "lower data.train_examples or turn null_finetune off",
        )
    return random.Random(f"{seed}-null-{topic}").sample(pool, n_examples), source


TOPIC_NAME_STYLES = ("as_released", "spaced")


def topic_name(topic: str, style: str) -> str:
    """A topic as the answer and judge templates get it (config prompt_topic_names, method.md: Stance).

    as_released: the snake_case name, as the authors' scripts pass it ('crime_and_gun');
    spaced: underscores as spaces ('crime and gun').
    """
    if style == "as_released":
        return topic
    if style == "spaced":
        return topic.replace("_", " ")
    raise ConfigError(
        f"prompt_topic_names: unknown style {style!r}", f"use one of {', '.join(TOPIC_NAME_STYLES)}"
    )
