"""Batched greedy generation with an explicit KV-cache loop (shared by plain and patched runs).

Greedy here means pure argmax of the next-token logits: no repetition penalty, no minimum
length, nothing from the checkpoint's ``generation_config`` except its EOS ids. Plain
(`greedy_generate`) and lockstep-patched (`polneurons.patching.patched_generate`) generation
run the same loop (`greedy_decode`) over the same length-sorted, left-padded batches
(`encode_batches`), so they differ only in how the next-token logits are computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import IO

import torch
from torch import nn

from polneurons.architectures import unwrap
from polneurons.errors import DataError
from polneurons.progress import progress_bar

# (input_ids [batch, new], attention_mask [batch, past + new], position_ids [batch, new])
#   -> next-token logits [batch, vocab] at the last new position.
StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def eos_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """EOS ids that end a row: the tokenizer's and those of the model's generation config."""
    ids = set()
    config = getattr(unwrap(model), "generation_config", None)
    for source in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    if not ids:
        raise DataError(
            "neither the tokenizer nor the model's generation config defines an EOS token",
            "use a tokenizer with an eos_token",
        )
    return sorted(ids)


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, or its EOS id when it has no pad token (left padding is masked)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise DataError(
            "the tokenizer has neither a pad nor an eos token", "set tokenizer.pad_token"
        )
    return tokenizer.eos_token_id


def encode_batches(
    tokenizer, prompts: list[str], batch_size: int, add_special_tokens: bool, device
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield ``(prompt indices, input_ids, attention_mask)`` batches, left-padded, on ``device``.

    Prompts are grouped longest first (stable), so each batch holds prompts of similar length;
    the indices say which prompts a batch holds. The tokenizer is not modified.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    for index, ids in enumerate(encoded):
        if not ids:
            raise DataError(
                f"prompt {index} is empty after tokenization",
                "drop empty prompts or tokenize with add_special_tokens=True",
            )
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = pad_token_id(tokenizer)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in indices)
        input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            length = len(encoded[i])
            input_ids[row, width - length :] = torch.tensor(encoded[i], dtype=torch.long)
            attention_mask[row, width - length :] = 1
        yield indices, input_ids.to(device), attention_mask.to(device)


def greedy_decode(
    step: StepFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
) -> torch.Tensor:
    """Greedy loop over a left-padded batch; returns the new tokens ``[batch, <= max_new_tokens]``.

    ``step`` gets the tokens not yet in its cache(s) (the whole prompt, then one token), the
    attention mask over everything so far, and their position ids (counted from each row's
    first real token, as Hugging Face ``generate`` does). Rows that produced an EOS get
    ``pad_id`` afterwards; the loop stops when every row has produced one.
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    eos = torch.tensor(eos_ids, device=device)
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, new_tokens = input_ids, []
    for _ in range(max_new_tokens):
        next_tokens = step(tokens, attention_mask, position_ids).argmax(dim=-1)
        next_tokens = next_tokens.masked_fill(finished, pad_id)
        new_tokens.append(next_tokens)
        finished |= torch.isin(next_tokens, eos)
        if bool(finished.all()):
            break
        tokens = next_tokens[:, None]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=-1)
        position_ids = position_ids[:, -1:] + 1
    if not new_tokens:
        return input_ids.new_empty(batch, 0)
    return torch.stack(new_tokens, dim=1)


def _row_ends(new_tokens: torch.Tensor, eos_ids: list[int]) -> list[tuple[list[int], int]]:
    """Each row's tokens and the index of its first EOS (the row's length when it has none)."""
    rows = new_tokens.tolist()
    return [
        (row, next((k for k, token in enumerate(row) if token in eos_ids), len(row)))
        for row in rows
    ]


def decode_new_tokens(tokenizer, new_tokens: torch.Tensor, eos_ids: list[int]) -> list[str]:
    """Text of each row up to its first EOS, special tokens skipped, stripped."""
    return [
        tokenizer.decode(row[:end], skip_special_tokens=True).strip()
        for row, end in _row_ends(new_tokens, eos_ids)
    ]


def count_new_tokens(new_tokens: torch.Tensor, eos_ids: list[int]) -> list[int]:
    """Tokens each row generated before its first EOS (== max_new_tokens: it never stopped)."""
    return [end for _, end in _row_ends(new_tokens, eos_ids)]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode (dropout off) for the block, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def cached_step(model: nn.Module, cache) -> StepFn:
    """A `greedy_decode` step: one forward of ``model`` that extends ``cache``."""

    def step(input_ids, attention_mask, position_ids):
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        return logits[:, -1].float()

    return step


def new_cache(model: nn.Module):
    """An empty KV cache laid out for ``model`` (sliding-window layers included)."""
    from transformers import DynamicCache

    return DynamicCache(config=unwrap(model).config)


def generate_batches(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    make_step: Callable[[], StepFn],
    max_new_tokens: int,
    batch_size: int,
    add_special_tokens: bool,
    progress: IO | None,
    desc: str,
    return_token_counts: bool = False,
) -> list[str] | tuple[list[str], list[int]]:
    """Run `greedy_decode` over ``prompts`` in batches, with a fresh step (fresh caches) per batch.
    With ``return_token_counts``: ``(texts, tokens generated before EOS per prompt)``."""
    eos_ids = eos_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer)
    texts: list[str] = [""] * len(prompts)
    counts: list[int] = [0] * len(prompts)
    bar = progress_bar(progress, total=len(prompts), desc=desc, unit="prompt")
    device = unwrap(model).device
    with bar, eval_mode(model), torch.inference_mode():
        for indices, input_ids, attention_mask in encode_batches(
            tokenizer, prompts, batch_size, add_special_tokens, device
        ):
            new_tokens = greedy_decode(
                make_step(), input_ids, attention_mask, max_new_tokens, eos_ids, pad_id
            )
            for i, text, count in zip(
                indices,
                decode_new_tokens(tokenizer, new_tokens, eos_ids),
                count_new_tokens(new_tokens, eos_ids),
                strict=True,
            ):
                texts[i], counts[i] = text, count
            bar.update(len(indices))
    return (texts, counts) if return_token_counts else texts


def greedy_generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    progress: IO | None = None,
    return_token_counts: bool = False,
) -> list[str] | tuple[list[str], list[int]]:
    """Greedy continuations of ``prompts`` (the text after each prompt, stripped), in order.

    Batched and left-padded; deterministic (argmax, eval mode). ``model`` may be a HF model
    or a peft model, with its adapter enabled or inside ``model.disable_adapter()``.
    ``add_special_tokens=False`` for prompts that already carry them (chat templates).
    ``progress``: a stream for a tqdm bar (e.g. the rule's log), or None for no bar.
    ``return_token_counts``: also return the tokens each answer took before its EOS.
    """
    return generate_batches(
        model,
        tokenizer,
        prompts,
        lambda: cached_step(model, new_cache(model)),
        max_new_tokens,
        batch_size,
        add_special_tokens,
        progress,
        desc="generate",
        return_token_counts=return_token_counts,
    )
