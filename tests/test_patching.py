import contextlib

import pytest
import torch

from polneurons.errors import ConfigError, ModelError
from polneurons.generation import (
    cached_step,
    encode_batches,
    greedy_decode,
    greedy_generate,
    new_cache,
)
from polneurons.models import AdapterSwitch
from polneurons.patching import lockstep_step, patched_generate
from polneurons.sites import SITES, NeuronSite
from polneurons.testing import ALL_LINEAR_TARGETS, tiny_lora, tiny_model

EOS, PAD, NEW_TOKENS = 1, 0, 8
PROMPTS = [
    "Stricter gun laws keep communities safe.",
    "Immigration",
    "Lower taxes and free markets create jobs and growth in the economy.",
]
WIDTH = {"mlp_output": 32, "mlp_intermediate": 64}
# Partial sets for which the patched base model differs from both M0 and M_s.
PARTIAL = {
    "mlp_output": {1: torch.arange(0, 32, 2)},
    "mlp_intermediate": {0: torch.arange(0, 64, 2), 1: torch.tensor([3, 5, 60])},
}


def _every_neuron(site):
    return {layer: torch.arange(WIDTH[site]) for layer in range(2)}


def _tokens(model, tokenizer, make_step, batch_size=2):
    """New tokens per prompt (up to and including EOS) from `greedy_decode` with ``make_step()``."""
    result = [None] * len(PROMPTS)
    with torch.inference_mode():
        for indices, input_ids, attention_mask in encode_batches(
            tokenizer, PROMPTS, batch_size, True, "cpu"
        ):
            new = greedy_decode(make_step(), input_ids, attention_mask, NEW_TOKENS, [EOS], PAD)
            for i, row in zip(indices, new.tolist(), strict=True):
                result[i] = row[: row.index(EOS) + 1] if EOS in row else row
    return result


def _tuned_tokens(model, tokenizer):
    return _tokens(model, tokenizer, lambda: cached_step(model, new_cache(model)))


def _base_tokens(model, tokenizer):
    with model.disable_adapter():
        return _tokens(model, tokenizer, lambda: cached_step(model, new_cache(model)))


def _lockstep_tokens(model, tokenizer, neurons, site_name, site=None):
    site = site or NeuronSite(model, site_name)
    checked, switch = site.check_neurons(neurons), AdapterSwitch(model)
    return _tokens(
        model,
        tokenizer,
        lambda: lockstep_step(model, switch, site, checked, new_cache(model), new_cache(model)),
    )


def _reference_patched_tokens(model, tokenizer, neurons, site_name):
    """Slow reference: per prompt, no padding, no KV cache; full-prefix forwards at every step."""
    site = NeuronSite(model, site_name)
    result = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            prompt_ids, new = tokenizer(prompt)["input_ids"], []
            for _ in range(NEW_TOKENS):
                prefix = torch.tensor([prompt_ids + new])
                with site.record() as tuned:
                    model(input_ids=prefix)
                with model.disable_adapter(), site.patch(neurons, tuned):
                    token = int(model(input_ids=prefix).logits[0, -1].argmax())
                new.append(token)
                if token == EOS:
                    break
            result.append(new)
    return result


@pytest.fixture(scope="module")
def tuned_everywhere():
    """LoRA on every linear projection (attention and MLP), nonzero: M_s differs from M0."""
    return tiny_lora("llama", ALL_LINEAR_TARGETS)


def test_empty_neuron_set_reproduces_base_greedy_generation(tuned_everywhere, tokenizer):
    model = tuned_everywhere
    base = _base_tokens(model, tokenizer)
    assert base != _tuned_tokens(model, tokenizer)
    for empty in ({}, {0: torch.tensor([], dtype=torch.long)}):
        assert _lockstep_tokens(model, tokenizer, empty, "mlp_output") == base
    with model.disable_adapter():
        base_texts = greedy_generate(model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=2)
    patched = patched_generate(model, tokenizer, PROMPTS, {}, "mlp_output", NEW_TOKENS, 2)
    assert patched == base_texts


@pytest.mark.parametrize(
    "site_name, lora_targets",
    [
        # Patching every MLP output makes M0's residual stream M_s's only if attention is
        # shared, so the adapter sits on the MLP projections only.
        ("mlp_output", r".*\.mlp\.(gate_proj|up_proj|down_proj)"),
        # Patching every down-projection input reproduces M_s only if down_proj is shared.
        ("mlp_intermediate", r".*\.mlp\.(gate_proj|up_proj)"),
    ],
)
def test_patching_every_neuron_reproduces_the_finetuned_greedy_tokens(
    site_name, lora_targets, tokenizer
):
    model = tiny_lora("llama", lora_targets)
    tuned = _tuned_tokens(model, tokenizer)
    assert tuned != _base_tokens(model, tokenizer)
    assert _lockstep_tokens(model, tokenizer, _every_neuron(site_name), site_name) == tuned
    tuned_texts = greedy_generate(model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=2)
    patched = patched_generate(
        model, tokenizer, PROMPTS, _every_neuron(site_name), site_name, NEW_TOKENS, 2
    )
    assert patched == tuned_texts


@pytest.mark.parametrize("site_name", SITES)
def test_patched_answer_is_the_patched_base_model_not_the_finetuned_model(
    site_name, tuned_everywhere, tokenizer
):
    model = tuned_everywhere
    neurons = PARTIAL[site_name]
    patched = _lockstep_tokens(model, tokenizer, neurons, site_name)
    assert patched != _tuned_tokens(model, tokenizer)  # saving M_s's tokens would fail here
    assert patched != _base_tokens(model, tokenizer)
    assert patched == _reference_patched_tokens(model, tokenizer, neurons, site_name)


class _SpySite(NeuronSite):
    """A NeuronSite that, on every patched forward, records the activations before and after."""

    def __init__(self, model, site):
        super().__init__(model, site)
        self.forwards = []  # (source, unpatched, patched) per forward

    @contextlib.contextmanager
    def patch(self, neurons, source):
        with self.record() as unpatched, super().patch(neurons, source), self.record() as patched:
            yield
        self.forwards.append((dict(source), unpatched, patched))


@pytest.mark.parametrize("site_name", SITES)
def test_lockstep_patching_touches_only_the_listed_coordinates(
    site_name, tuned_everywhere, tokenizer
):
    model = tuned_everywhere
    spy = _SpySite(model, site_name)
    neurons = {1: torch.tensor([1, 4, 9, 30])}
    _lockstep_tokens(model, tokenizer, neurons, site_name, site=spy)
    listed = neurons[1]
    unlisted = torch.ones(spy.width, dtype=torch.bool)
    unlisted[listed] = False
    assert len(spy.forwards) >= 2  # at least the prompt and one generated token
    for source, unpatched, patched in spy.forwards:
        assert torch.equal(patched[0], unpatched[0])
        assert torch.equal(patched[1][..., unlisted], unpatched[1][..., unlisted])
        assert torch.equal(patched[1][..., listed], source[1][..., listed])
        assert not torch.equal(source[1][..., listed], unpatched[1][..., listed])


def test_adapter_switch_runs_the_base_model_and_restores_each_layer(tuned_everywhere):
    model = tuned_everywhere
    input_ids = torch.tensor([[5, 6, 7, 8]])
    switch = AdapterSwitch(model)
    with torch.inference_mode():
        tuned = model(input_ids=input_ids).logits
        with model.disable_adapter():
            base = model(input_ids=input_ids).logits
        requires_grad = [p.requires_grad for p in model.parameters()]
        with switch.disabled():
            switched = model(input_ids=input_ids).logits
        assert torch.equal(switched, base) and not torch.equal(switched, tuned)
        assert torch.equal(model(input_ids=input_ids).logits, tuned)
        with pytest.raises(RuntimeError, match="boom"), switch.disabled():
            raise RuntimeError("boom")
    assert not any(layer.disable_adapters for layer in switch.layers)
    assert [p.requires_grad for p in model.parameters()] == requires_grad


def test_patched_generate_refuses_a_model_without_adapter_and_a_bad_site(tokenizer):
    with pytest.raises(ModelError, match="peft"):
        patched_generate(tiny_model("llama"), tokenizer, PROMPTS, {}, "mlp_output", 2)
    with pytest.raises(ConfigError, match="unknown neuron site"):
        patched_generate(tiny_lora("llama"), tokenizer, PROMPTS, {}, "residual", 2)
    tuned = tiny_lora("llama")
    with pytest.raises(ModelError, match="adapter is disabled"), tuned.disable_adapter():
        patched_generate(tuned, tokenizer, PROMPTS, {}, "mlp_output", 2)
    with pytest.raises(ConfigError, match="outside 0..31"):
        patched_generate(tiny_lora("llama"), tokenizer, PROMPTS, {0: [40]}, "mlp_output", 2)


@pytest.mark.parametrize(
    "site_name, lora_targets",
    [
        ("mlp_output", r".*\.mlp\.(gate_proj|up_proj|down_proj)"),
        ("mlp_intermediate", r".*\.mlp\.(gate_proj|up_proj)"),
    ],
)
def test_restoring_every_neuron_gives_the_base_models_greedy_tokens(
    site_name, lora_targets, tokenizer
):
    # restore (method.md: InhibitFT): M_s generates with M0's values on the set; with every
    # coordinate of a site only the adapted MLP feeds, M_s's residual stream is M0's.
    model = tiny_lora("llama", lora_targets)
    with model.disable_adapter():
        base_texts = greedy_generate(model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=2)
    tuned_texts = greedy_generate(model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=2)
    assert base_texts != tuned_texts
    restored = patched_generate(
        model,
        tokenizer,
        PROMPTS,
        _every_neuron(site_name),
        site_name,
        NEW_TOKENS,
        2,
        direction="necessity",
    )
    assert restored == base_texts
    untouched = patched_generate(
        model, tokenizer, PROMPTS, {}, site_name, NEW_TOKENS, 2, direction="necessity"
    )
    assert untouched == tuned_texts  # nothing restored: M_s itself


@pytest.mark.parametrize("site_name", SITES)
def test_restoring_a_partial_set_matches_full_prefix_forwards(
    tuned_everywhere, tokenizer, site_name
):
    model, neurons = tuned_everywhere, PARTIAL[site_name]
    site = NeuronSite(model, site_name)
    reference = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            prompt_ids, new = tokenizer(prompt)["input_ids"], []
            for _ in range(NEW_TOKENS):
                prefix = torch.tensor([prompt_ids + new])
                with model.disable_adapter(), site.record() as base:
                    model(input_ids=prefix)
                with site.patch(neurons, base):
                    token = int(model(input_ids=prefix).logits[0, -1].argmax())
                new.append(token)
                if token == EOS:
                    break
            reference.append(new)
    checked, switch = site.check_neurons(neurons), AdapterSwitch(model)
    restored = _tokens(
        model,
        tokenizer,
        lambda: lockstep_step(
            model, switch, site, checked, new_cache(model), new_cache(model), "necessity"
        ),
    )
    assert restored == reference
    assert reference not in (_base_tokens(model, tokenizer), _tuned_tokens(model, tokenizer))


@pytest.mark.parametrize(
    "direction, written", [("sufficiency", "n_patched"), ("necessity", "n_restored")]
)
def test_patched_rows_keep_each_item_beside_its_patched_answer(tokenizer, direction, written):
    from polneurons.neurons import NeuronSet
    from polneurons.patching import patched_rows

    model = tiny_lora("llama", ALL_LINEAR_TARGETS)
    layers, indices = [1] * 16, list(range(0, 32, 2))
    neurons = NeuronSet(layers, indices, [1.0] * 16, "mlp_output", n_layers=2, width=32)
    items = [{"id": f"q{i}", "test_set": "race"} for i in range(len(PROMPTS))]
    rows = patched_rows(
        model, tokenizer, items, PROMPTS, neurons, {"max_new_tokens": 4, "batch_size": 2},
        direction=direction,
    )  # fmt: skip
    expected, counts = patched_generate(
        model, tokenizer, PROMPTS, neurons.by_layer(), "mlp_output", 4, batch_size=2,
        return_token_counts=True, direction=direction,
    )  # fmt: skip
    assert [r["response"] for r in rows] == expected
    assert [r["n_new_tokens"] for r in rows] == counts
    assert [r["id"] for r in rows] == [i["id"] for i in items]
    assert all(r[written] == 16 and r["prompt"] == p for r, p in zip(rows, PROMPTS, strict=True))
