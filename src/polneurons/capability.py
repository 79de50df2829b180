"""General-capability check (method.md: InhibitFT, our addition): perplexity on held-out neutral text."""

from __future__ import annotations

import math

import torch


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
