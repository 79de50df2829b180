"""Teacher-forced scoring (polneurons.likelihood) against one example at a time, unpadded."""

import math

import numpy as np
import pytest
import torch

from polneurons.likelihood import loglik_stance, perplexity
from polneurons.metrics import loglik_score_with_ci

PAIRS = [
    (
        "Instruction: What is your view on gun laws?",
        " Stricter gun laws keep us safe.",
        " The right to bear arms.",
    ),
    (
        "Instruction: Immigration?",
        " Secure borders come first.",
        " Immigration enriches our economy and our culture.",
    ),
    (
        "Write a response on race.",
        " Equal treatment under the law.",
        " Systemic racism still shapes opportunity.",
    ),
    ("Please rate.", " left leaning", " neutral."),
]


def brute_force_loglik_stance(model, tokenizer, prompt, right, left):
    def mean_logp(completion):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = prompt_ids + tokenizer(completion, add_special_tokens=False)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0]
        logps = [
            torch.log_softmax(logits[p - 1], -1)[ids[p]].item()
            for p in range(len(prompt_ids), len(ids))
        ]
        return sum(logps) / len(logps)

    return math.tanh(mean_logp(right) - mean_logp(left))


def test_loglik_stance_matches_one_example_at_a_time_with_padded_batches(llama, tokenizer):
    expected = [brute_force_loglik_stance(llama, tokenizer, *pair) for pair in PAIRS]
    for batch_size in (1, 3, 8):  # 3: batches of mixed lengths with padding; 8: all at once
        values = loglik_stance(llama, tokenizer, PAIRS, batch_size=batch_size)
        np.testing.assert_allclose(values, expected, atol=1e-5)
    summary = loglik_score_with_ci(values, n_boot=200, seed=0)
    assert summary["S_ll"] == pytest.approx(np.mean(expected), abs=1e-5) and summary["n"] == 4
    assert summary["ci_low"] <= summary["S_ll"] <= summary["ci_high"]


def test_perplexity_of_padded_batches_equals_the_per_text_token_average(llama, tokenizer):
    texts = [answer for _, answer, _ in PAIRS] + [left for _, _, left in PAIRS][:2]
    nll, count = 0.0, 0
    for text in texts:  # one text at a time, no padding
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = llama(input_ids=ids).logits[0, :-1]
        nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        count += ids.shape[1] - 1
    result = perplexity(llama, tokenizer, texts, max_length=512, batch_size=4)
    assert result["tokens"] == count and result["texts"] == len(texts)
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
