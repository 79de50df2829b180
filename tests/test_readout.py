"""The teacher-forced causal readout (polneurons.readout) against a brute-force loop: one pair at
a time, no padding, the intervention written by hand."""

import math

import numpy as np
import pytest
import torch

from polneurons.errors import ModelError
from polneurons.likelihood import loglik_stance
from polneurons.readout import BASE, DIRECTIONS, TUNED, intervened_stance, readout_share
from polneurons.sites import NeuronSite
from polneurons.testing import ALL_LINEAR_TARGETS, tiny_lora, tiny_model

PAIRS = [
    ("Instruction: What is your view on gun laws?", " Stricter laws.", " The right to bear arms."),
    ("Immigration?", " Secure borders come first.", " Immigration enriches our economy."),
    ("Write a response on race.", " Equal treatment.", " Systemic racism still shapes it."),
    ("Please rate.", " left leaning", " neutral."),
    ("Taxes", " Lower taxes create jobs and growth in the economy.", " Tax the rich."),
]
SETS = {
    "partial": {0: torch.arange(0, 32, 3), 1: torch.tensor([1, 5, 30])},
    "one layer": {1: torch.arange(0, 32, 2)},
    "empty": {},
}


def brute_force(model, tokenizer, pair, site_name, neurons, direction, answer_tokens=None):
    """S_ll of one pair with `neurons` written from one model into the other, unbatched."""
    site = NeuronSite(model, site_name)
    prompt, right, left = pair

    def mean_logp(answer):
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:answer_tokens]
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.inference_mode():
            if direction == "sufficiency":  # M_s's values into M0
                with site.record() as source:
                    model(input_ids=ids)
                with model.disable_adapter(), site.patch(neurons, source):
                    logits = model(input_ids=ids).logits[0]
            else:  # M0's values into M_s
                with model.disable_adapter(), site.record() as source:
                    model(input_ids=ids)
                with site.patch(neurons, source):
                    logits = model(input_ids=ids).logits[0]
        logps = [
            torch.log_softmax(logits[p - 1], -1)[ids[0, p]].item()
            for p in range(len(prompt_ids), ids.shape[1])
        ]
        return sum(logps) / len(logps)

    return math.tanh(mean_logp(right) - mean_logp(left))


@pytest.fixture(scope="module")
def tuned_everywhere():
    """LoRA on every linear projection (attention and MLP): M_s differs from M0 everywhere."""
    return tiny_lora("llama", ALL_LINEAR_TARGETS)


@pytest.mark.parametrize("site", ["mlp_output", "mlp_intermediate"])
def test_readout_matches_a_brute_force_loop_in_both_directions(tuned_everywhere, tokenizer, site):
    model = tuned_everywhere
    sets = {"partial": {0: torch.arange(0, 32, 3), 1: torch.tensor([1, 5, 30])}}
    result = intervened_stance(model, tokenizer, PAIRS, site, sets, batch_size=4)
    for direction in DIRECTIONS:
        expected = [
            brute_force(model, tokenizer, pair, site, sets["partial"], direction) for pair in PAIRS
        ]
        np.testing.assert_allclose(result["partial", direction], expected, atol=1e-5)
    # the intervention changed something: neither direction is a model's own S_ll
    assert not np.allclose(result["partial", "sufficiency"], result[BASE, ""], atol=1e-4)
    assert not np.allclose(result["partial", "necessity"], result[TUNED, ""], atol=1e-4)


def test_a_pairs_readout_does_not_depend_on_the_pairs_in_its_batch(tuned_everywhere, tokenizer):
    """Padding invariance: batch sizes 1 (no padding), 3 (mixed lengths) and all at once give
    every pair the same values, and a pair scored alone gets the value it gets among others."""
    model = tuned_everywhere
    runs = [
        intervened_stance(model, tokenizer, PAIRS, "mlp_output", SETS, batch_size=size)
        for size in (1, 3, 16)
    ]
    for key, values in runs[0].items():
        for other in runs[1:]:
            np.testing.assert_allclose(other[key], values, atol=1e-5, err_msg=str(key))
    alone = intervened_stance(model, tokenizer, PAIRS[2:3], "mlp_output", SETS, batch_size=1)
    for key, values in alone.items():
        np.testing.assert_allclose(values, runs[2][key][2:3], atol=1e-5, err_msg=str(key))


def test_the_models_own_rows_are_their_loglik_stance(tuned_everywhere, tokenizer):
    model = tuned_everywhere
    result = intervened_stance(model, tokenizer, PAIRS, "mlp_output", SETS, batch_size=3)
    np.testing.assert_allclose(result[TUNED, ""], loglik_stance(model, tokenizer, PAIRS), atol=1e-5)
    with model.disable_adapter():
        base = loglik_stance(model, tokenizer, PAIRS)
    np.testing.assert_allclose(result[BASE, ""], base, atol=1e-5)
    # an empty set writes nothing: each direction is the model it runs
    np.testing.assert_array_equal(result["empty", "sufficiency"], result[BASE, ""])
    np.testing.assert_array_equal(result["empty", "necessity"], result[TUNED, ""])


def test_restoring_every_coordinate_when_only_the_mlp_is_adapted_gives_the_other_model(
    tokenizer,
):
    """With LoRA on the MLPs only, M0's MLP outputs at every layer written into M_s make M_s
    compute M0 exactly (and M_s's written into M0 make it M_s)."""
    model = tiny_lora("llama")  # MLP projections only
    every = {layer: torch.arange(32) for layer in range(2)}
    result = intervened_stance(model, tokenizer, PAIRS, "mlp_output", {"all": every}, 3)
    assert not np.allclose(result[BASE, ""], result[TUNED, ""], atol=1e-3)
    np.testing.assert_allclose(result["all", "necessity"], result[BASE, ""], atol=1e-6)
    np.testing.assert_allclose(result["all", "sufficiency"], result[TUNED, ""], atol=1e-6)


def test_answer_tokens_scores_only_the_first_tokens_of_each_answer(tuned_everywhere, tokenizer):
    model = tuned_everywhere
    sets = {"one layer": SETS["one layer"]}
    result = intervened_stance(model, tokenizer, PAIRS, "mlp_output", sets, 2, answer_tokens=3)
    expected = [
        brute_force(model, tokenizer, pair, "mlp_output", sets["one layer"], "necessity", 3)
        for pair in PAIRS
    ]
    np.testing.assert_allclose(result["one layer", "necessity"], expected, atol=1e-5)
    full = intervened_stance(model, tokenizer, PAIRS, "mlp_output", sets, 2)
    assert not np.allclose(full["one layer", "necessity"], expected, atol=1e-4)


def test_readout_shares_follow_their_formulas_and_are_undefined_without_a_shift():
    assert readout_share("sufficiency", 0.3, 0.1, 0.5) == pytest.approx(0.5)
    assert readout_share("necessity", 0.3, 0.1, 0.5) == pytest.approx(0.5)
    assert readout_share("necessity", 0.5, 0.1, 0.5) == 0.0  # nothing removed
    assert math.isnan(readout_share("sufficiency", 0.3, 0.2, 0.2))
    shares = readout_share("sufficiency", np.array([0.2, 0.4]), np.array([0.0, 0.4]), 1.0)
    np.testing.assert_allclose(shares, [0.2, 0.0])
    with pytest.raises(ValueError, match="direction"):
        readout_share("both", 0.3, 0.1, 0.5)


def test_readout_refuses_a_model_without_adapter(tokenizer):
    with pytest.raises(ModelError, match="peft adapter"):
        intervened_stance(tiny_model("llama"), tokenizer, PAIRS, "mlp_output", SETS)
