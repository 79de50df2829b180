"""Teacher-forced scoring of a model (method.md: Stance, InhibitFT): the judge-free log-likelihood
stance of held-out answer pairs, and perplexity on held-out neutral text. The statistics over
these values live in `metrics`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from polneurons.errors import DataError


def loglik_stance(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str, str]],
    batch_size: int = 8,
    add_special_tokens: bool = True,
) -> np.ndarray:
    """Per (instruction, right answer, left answer) pair: tanh(mean per-token log p(right answer |
    instruction) - mean per-token log p(left answer | instruction)).

    The instruction and the answer are tokenized separately and concatenated; only the answer's
    tokens are scored, padding excluded. `batch_size` counts sequences (two per pair).
    """
    mean_logp = completion_mean_logprobs(
        model, tokenizer, pair_sequences(pairs), batch_size, add_special_tokens
    )
    return stance_of_pairs(mean_logp)


def pair_sequences(pairs: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(prompt, completion) of each pair's right answer, then its left answer."""
    return [(prompt, answer) for prompt, right, left in pairs for answer in (right, left)]


def stance_of_pairs(mean_logp: np.ndarray) -> np.ndarray:
    """Per pair, from the mean log-probabilities of `pair_sequences` (right, left, right, ...)."""
    right, left = mean_logp[0::2], mean_logp[1::2]
    # method.md: Stance: tanh(logp(right | instr) - logp(left | instr)), length-normalised
    return np.tanh(right - left)


@dataclass
class ScoredBatch:
    """One left-padded batch of (prompt, completion) sequences, ready for a forward: every
    completion ends at the last position, so only the last `answer + 1` positions need logits
    (the vocabulary projection dominates the cost otherwise)."""

    indices: list[int]  # positions of its sequences in the caller's list
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    scored: torch.Tensor  # [batch, answer]: the completion's tokens among the last `answer`
    answer: int

    def logits(self, model) -> torch.Tensor:
        return model(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            position_ids=self.position_ids,
            logits_to_keep=self.answer + 1,
        ).logits

    def mean_logprobs(self, logits: torch.Tensor) -> np.ndarray:
        """Mean log-probability of each completion's tokens (the token at position p is
        predicted by the logits at p - 1), row by row: one float32 [answer, vocab] at a time."""
        targets = self.input_ids[:, -self.answer :]
        means = np.empty(len(self.indices))
        for row in range(len(self.indices)):
            logp = logits[row, :-1].float().log_softmax(-1)
            logp = logp.gather(-1, targets[row, :, None]).squeeze(-1)
            logp = torch.where(self.scored[row], logp, 0.0)
            means[row] = float(logp.double().sum() / self.scored[row].sum())
        return means


def scored_batches(
    tokenizer,
    texts: Sequence[tuple[str, str]],
    batch_size: int,
    add_special_tokens: bool,
    device,
    answer_tokens: int | None = None,
) -> list[ScoredBatch]:
    """The batches `completion_mean_logprobs` runs, longest sequences first (less padding).
    `answer_tokens`: score only the first that many tokens of each completion (None: all)."""
    sequences = []
    for prompt, completion in texts:
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not prompt_ids or not completion_ids:
            raise DataError(
                "a log-likelihood pair has an empty prompt or answer", "drop empty pairs"
            )
        sequences.append((prompt_ids, completion_ids[:answer_tokens]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(sequences)), key=lambda i: -sum(map(len, sequences[i])))
    batches = []
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = [sequences[i] for i in indices]
        width = max(len(p) + len(c) for p, c in batch)
        answer = max(len(c) for _, c in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), answer), dtype=torch.bool)
        for row, (prompt_ids, completion_ids) in enumerate(batch):
            ids = prompt_ids + completion_ids
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
            scored[row, answer - len(completion_ids) :] = True
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        batches.append(
            ScoredBatch(
                indices,
                input_ids.to(device),
                attention.to(device),
                positions.to(device),
                scored.to(device),
                answer,
            )
        )
    return batches


def completion_mean_logprobs(
    model, tokenizer, texts, batch_size, add_special_tokens, answer_tokens: int | None = None
) -> np.ndarray:
    """Mean per-token log-probability of each completion given its prompt."""
    device = next(model.parameters()).device
    means = np.empty(len(texts))
    for batch in scored_batches(
        tokenizer, texts, batch_size, add_special_tokens, device, answer_tokens
    ):
        with torch.inference_mode():
            means[batch.indices] = batch.mean_logprobs(batch.logits(model))
    return means


@torch.inference_mode()
def perplexity(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 8) -> dict:
    """Token-level perplexity exp(total NLL / total tokens) over `texts`, padding excluded."""
    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
            ).to(device)
            logits = model(**batch).logits[:, :-1]
            targets = batch["input_ids"][:, 1:]
            mask = batch["attention_mask"][:, 1:].bool()
            for row in range(logits.shape[0]):  # one float32 [length, vocab] at a time
                nll = torch.nn.functional.cross_entropy(
                    logits[row, mask[row]].float(), targets[row, mask[row]], reduction="sum"
                )
                total_nll += float(nll)
            total_tokens += int(mask.sum())
    finally:
        tokenizer.padding_side = side
    return {
        "perplexity": math.exp(total_nll / total_tokens) if total_tokens else float("nan"),
        "tokens": total_tokens,
        "texts": len(texts),
    }
