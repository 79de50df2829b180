"""Prompt construction: the authors' answer templates, optionally wrapped in the model's chat template."""

from __future__ import annotations

import functools

from polneurons.data import EXTRA_SETS, topic_name
from polneurons.errors import ConfigError

PROMPT_FORMATS = ("bare", "chat")


def answer_prompt(templates: dict[str, str], test_set: str, text: str, topic_names: str) -> str:
    """answer_prompt.txt (slots: topic, topic, instruction) for the six topics; answer_prompt2.txt
    (slot: statement) for pct and questionnaire (method.md: Stance). The topic is written as
    `topic_names` says (data.topic_name)."""
    if test_set in EXTRA_SETS:
        return templates["answer_prompt2"].format(text)
    name = topic_name(test_set, topic_names)
    return templates["answer_prompt"].format(name, name, text)


def render(tokenizer, text: str, prompt_format: str) -> str:
    """The text as the model sees it: bare, or one user turn in the chat template."""
    if prompt_format == "bare":
        return text
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "prompt_format is 'chat' but the tokenizer has no chat template",
                "set prompt_format: bare for base (non-instruct) checkpoints",
            )
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    raise ConfigError(f"unknown prompt_format {prompt_format!r}", f"use one of {PROMPT_FORMATS}")


def adds_special_tokens(prompt_format: str) -> bool:
    """A chat-rendered prompt already holds its special tokens; a bare one gets the tokenizer's."""
    return prompt_format == "bare"


# ---------------------------------------------------------------- what each job feeds the model


def load_templates(root) -> dict[str, str]:
    from polneurons.data import load_template

    names = ("answer_prompt", "answer_prompt2", "prompt_evaluation", "prompt_evaluation2")
    return {name: load_template(root, name) for name in names}


def eval_items(root, test_sets, limit: int | None) -> list[dict]:
    """The evaluation prompts of each test set in the authors' order (first `limit` of each)."""
    from polneurons.data import load_eval_set

    items = []
    for test_set in test_sets:
        texts = load_eval_set(root, test_set)[:limit]
        items += [
            {"id": f"{test_set}-{i:03d}", "test_set": test_set, "text": t}
            for i, t in enumerate(texts)
        ]
    return items


def eval_prompts(
    root, tokenizer, items: list[dict], prompt_format: str, topic_names: str
) -> list[str]:
    templates = load_templates(root)
    return [
        render(
            tokenizer,
            answer_prompt(templates, it["test_set"], it["text"], topic_names),
            prompt_format,
        )
        for it in items
    ]


def topic_pools(root, topic: str, sizes: dict, seed: int):
    """The data pools of one topic (data.topic_pools; `sizes` from config.pool_sizes)."""
    from polneurons.data import load_eval_set, load_pairs
    from polneurons.data import topic_pools as cut

    repeated = _repeated_texts(str(root)) if sizes["readout_pairs"] else frozenset()
    return cut(
        load_pairs(root, topic),
        load_eval_set(root, topic),
        sizes=sizes,
        seed=seed,
        repeated=repeated,
    )


@functools.lru_cache(maxsize=4)
def _repeated_texts(root: str) -> frozenset[str]:
    from polneurons.data import TOPICS, load_pairs, repeated_texts

    return repeated_texts(load_pairs(root, topic) for topic in TOPICS)


def localize_items(root, topic: str, sizes: dict, seed: int, limit: int | None) -> list[dict]:
    """The prompts the neurons of `topic` are localized on: its held-out localization pool, or
    (sizes["localize_prompts"] == 0, `same_as_eval`) its evaluation prompts, as the paper."""
    if not sizes["localize_prompts"]:
        return eval_items(root, [topic], limit)
    texts = topic_pools(root, topic, sizes, seed).localize
    return [
        {"id": f"{topic}-loc-{i:03d}", "test_set": topic, "text": t} for i, t in enumerate(texts)
    ]


def null_train_examples(
    root, tokenizer, topic, leaning, data_cfg, sizes, seed, topics, prompt_format
):
    """The null fine-tune's (prompt, completion) pairs, as many as the political run of (topic,
    leaning) trains on, and where they came from (data.null_examples)."""
    from polneurons.data import null_examples, training_examples

    splits = {t: topic_pools(root, t, sizes, seed) for t in topics}
    count = len(
        training_examples(
            splits[topic],
            leaning,
            n_examples=data_cfg["train_examples"],
            label_filter=data_cfg["label_filter"],
            seed=seed,
        )
    )
    pairs, source = null_examples(splits, topic, count, seed)
    return [(render(tokenizer, i, prompt_format), a) for i, a in pairs], source


def train_examples(root, tokenizer, topic, leaning, data_cfg, sizes, seed, prompt_format):
    """(prompt, completion) pairs: the bare instruction (method.md: Fine-tuning), rendered in the prompt format."""
    from polneurons.data import training_examples

    pairs = training_examples(
        topic_pools(root, topic, sizes, seed),
        leaning,
        n_examples=data_cfg["train_examples"],
        label_filter=data_cfg["label_filter"],
        seed=seed,
    )
    return [(render(tokenizer, p.instruction, prompt_format), p.answer(leaning)) for p in pairs]
