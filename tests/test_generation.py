import copy
import io

import pytest
import torch
from transformers import GenerationConfig

from polneurons.errors import DataError
from polneurons.generation import (
    cached_step,
    decode_new_tokens,
    encode_batches,
    greedy_decode,
    greedy_generate,
    new_cache,
)
from polneurons.testing import ARCHS, tiny_lora, tiny_model

PROMPTS = [
    "Stricter gun laws keep communities safe.",
    "Immigration",
    "Lower taxes and free markets create jobs and growth in the economy.",
]


def _hf_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
    """Reference: Hugging Face generate, greedy, on the same batches; (texts, token batches)."""
    config = GenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=0, eos_token_id=1
    )
    texts, token_batches = [None] * len(prompts), []
    for indices, input_ids, attention_mask in encode_batches(
        tokenizer, prompts, batch_size, True, "cpu"
    ):
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config
            )
        new = output[:, input_ids.shape[1] :]
        token_batches.append(new)
        for i, text in zip(indices, decode_new_tokens(tokenizer, new, [1]), strict=True):
            texts[i] = text
    return texts, token_batches


def _loop_tokens(model, tokenizer, prompts, max_new_tokens, batch_size):
    """New tokens of each batch from our loop (`greedy_decode` with a KV-cached step)."""
    token_batches = []
    with torch.inference_mode():
        for _, input_ids, attention_mask in encode_batches(
            tokenizer, prompts, batch_size, True, "cpu"
        ):
            step = cached_step(model, new_cache(model))
            token_batches.append(
                greedy_decode(step, input_ids, attention_mask, max_new_tokens, [1], 0)
            )
    return token_batches


def _assert_same_tokens(batches, expected_batches):
    assert len(batches) == len(expected_batches)
    for tokens, expected in zip(batches, expected_batches, strict=True):
        assert tokens.shape[1] > 0
        assert torch.equal(tokens, expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generate_matches_hf_generate_token_for_token_on_padded_batches(arch, tokenizer):
    model = tiny_model(arch)
    expected_texts, expected_tokens = _hf_generate(model, tokenizer, PROMPTS, 6, 2)
    _assert_same_tokens(_loop_tokens(model, tokenizer, PROMPTS, 6, 2), expected_tokens)
    texts = greedy_generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    assert texts == expected_texts


def test_left_padding_does_not_change_the_continuation(llama, tokenizer):
    one_by_one = greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=8, batch_size=1)
    batched = greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    assert batched == one_by_one
    assert greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3) == batched


def test_peft_model_generates_with_adapter_and_as_base_model_inside_disable_adapter(tokenizer):
    peft_model = tiny_lora("llama")
    tuned = greedy_generate(peft_model, tokenizer, PROMPTS, max_new_tokens=6)
    with peft_model.disable_adapter():
        base = greedy_generate(peft_model, tokenizer, PROMPTS, max_new_tokens=6)
    assert tuned == _hf_generate(peft_model, tokenizer, PROMPTS, 6, 8)[0]
    assert base == greedy_generate(tiny_model("llama"), tokenizer, PROMPTS, max_new_tokens=6)
    assert tuned != base


def test_tokenizer_without_pad_token_pads_with_eos_and_is_left_unchanged(llama, tokenizer):
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    no_pad.padding_side = "right"
    texts = greedy_generate(llama, no_pad, PROMPTS, max_new_tokens=5, batch_size=3)
    assert no_pad.pad_token is None and no_pad.padding_side == "right"
    assert texts == greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=5, batch_size=3)


def test_greedy_decode_stops_when_every_row_has_produced_eos_and_pads_after_it():
    eos, pad, vocab = 1, 0, 10
    script = {0: [5, 1, 7, 7], 1: [6, 6, 6, 1]}  # row -> token chosen at each step
    calls = []

    def step(input_ids, attention_mask, position_ids):
        calls.append((input_ids.clone(), attention_mask.clone(), position_ids.clone()))
        logits = torch.zeros(2, vocab)
        for row, tokens in script.items():
            logits[row, tokens[len(calls) - 1]] = 1.0
        return logits

    input_ids = torch.tensor([[0, 0, 3, 4], [2, 3, 4, 5]])
    attention_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    new = greedy_decode(step, input_ids, attention_mask, 10, [eos], pad)
    assert new.tolist() == [[5, 1, pad, pad], [6, 6, 6, 1]]
    assert len(calls) == 4
    assert calls[0][2].tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]  # positions skip left padding
    assert calls[1][0].tolist() == [[5], [6]]
    assert calls[1][2].tolist() == [[2], [4]]
    assert calls[3][1].shape == (2, 7)
    assert decode_new_tokens(_Identity(), new, [eos]) == ["5", "6 6 6"]


class _Identity:
    def decode(self, tokens, skip_special_tokens):
        return " ".join(map(str, tokens)) + " "


def test_progress_bar_goes_to_the_given_stream_and_empty_prompt_is_a_data_error(llama, tokenizer):
    stream = io.StringIO()
    greedy_generate(llama, tokenizer, PROMPTS, max_new_tokens=2, batch_size=2, progress=stream)
    assert "3/3" in stream.getvalue()
    with pytest.raises(DataError, match="prompt 1 is empty"):
        greedy_generate(llama, tokenizer, ["a", ""], max_new_tokens=2, add_special_tokens=False)


def test_train_mode_is_restored_after_generation(llama, tokenizer):
    llama.train()
    greedy_generate(llama, tokenizer, PROMPTS[:1], max_new_tokens=2)
    assert llama.training


@pytest.mark.parametrize("arch", ["mistral", "gemma2", "gemma3_text"])
def test_sliding_window_layers_match_hf_generate_beyond_the_window(arch, tokenizer):
    model = tiny_model(arch, sliding_window=4)
    _, expected_tokens = _hf_generate(model, tokenizer, PROMPTS, 8, 2)
    _assert_same_tokens(_loop_tokens(model, tokenizer, PROMPTS, 8, 2), expected_tokens)
