"""Lockstep activation patching: the base model generates with the fine-tuned model's neurons.

method.md: Activation patching. ``model`` is a peft model: the fine-tuned model ``M_s`` is the model with
its adapter enabled, the base model ``M0`` the same weights with the adapter disabled (as in
``model.disable_adapter()``; `models.AdapterSwitch` does the same, cheaply enough for every
step).
At every prompt position and every generated step both run on the same prefix, each with its
own KV cache; ``M0``'s site activations at the patched coordinates are overwritten with
``M_s``'s, and the patched ``M0`` picks the next token (greedy), which is appended for both.
The returned text is the patched ``M0``'s.

Unlike the authors' released script (method.md: Where we differ): the indices are coordinates of
the named site, applied at that same site (`NeuronSite` rejects indices beyond its width); the
MLP itself runs unchanged (activation function included); and the answer is the patched base
model's tokens, never ``M_s``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

import torch
from torch import nn

from polneurons.errors import ModelError
from polneurons.generation import StepFn, cached_step, generate_batches, new_cache
from polneurons.models import AdapterSwitch
from polneurons.sites import NeuronSite

DIRECTIONS = ("sufficiency", "necessity")


def patched_rows(
    model: nn.Module,
    tokenizer,
    items: list[dict],
    prompts: list[str],
    neurons,
    generation: Mapping,
    add_special_tokens: bool = True,
    progress: IO | None = None,
    direction: str = "sufficiency",
) -> list[dict]:
    """The rows of a patched run's ``generations.jsonl``: each evaluation item with its prompt,
    the patched answer (`patched_generate` of ``neurons``, a `neurons.NeuronSet`, in
    ``direction``), its new tokens, and how many neurons were written (``n_patched``;
    ``n_restored`` in the necessity direction, the ``restore`` mitigation). ``generation``:
    the config's ``max_new_tokens`` and ``batch_size``.

    >>> from polneurons.neurons import NeuronSet
    >>> from polneurons.testing import tiny_lora, tiny_tokenizer
    >>> g = NeuronSet([1, 1], [0, 2], [1.0, 1.0], "mlp_output", n_layers=2, width=32)
    >>> rows = patched_rows(tiny_lora(), tiny_tokenizer(), [{"id": "q0"}], ["Guns"], g,
    ...     {"max_new_tokens": 3, "batch_size": 1})
    >>> rows[0]["id"], rows[0]["n_patched"], rows[0]["n_new_tokens"] <= 3
    ('q0', 2, True)
    """
    responses, n_tokens = patched_generate(
        model,
        tokenizer,
        prompts,
        neurons.by_layer(),
        neurons.site,
        max_new_tokens=generation["max_new_tokens"],
        batch_size=generation["batch_size"],
        add_special_tokens=add_special_tokens,
        progress=progress,
        return_token_counts=True,
        direction=direction,
    )
    written = "n_patched" if direction == "sufficiency" else "n_restored"
    return [
        {**item, "prompt": prompt, "response": response, "n_new_tokens": k, written: len(neurons)}
        for item, prompt, response, k in zip(items, prompts, responses, n_tokens, strict=True)
    ]


def lockstep_step(
    model: nn.Module,
    switch: AdapterSwitch,
    site: NeuronSite,
    neurons: dict[int, torch.Tensor],
    tuned_cache,
    base_cache,
    direction: str = "sufficiency",
) -> StepFn:
    """A `greedy_decode` step for one batch: the donor model then the patched model on the same
    new tokens.

    ``sufficiency`` (method.md: Activation patching): ``M0``'s activations at ``neurons`` are
    overwritten with ``M_s``'s on the same positions; the logits returned are the patched
    ``M0``'s. ``necessity`` (method.md: InhibitFT): ``restore``, ``M_s`` with ``M0``'s values
    at ``neurons``, the logits the patched ``M_s``'s. With no neurons the donor is not run
    (the patched model is the receiving model itself).

    >>> from polneurons.generation import new_cache
    >>> from polneurons.testing import tiny_lora
    >>> model = tiny_lora()
    >>> step = lockstep_step(model, AdapterSwitch(model), NeuronSite(model, "mlp_output"),
    ...     {1: torch.tensor([0, 2])}, new_cache(model), new_cache(model))
    >>> ids = torch.tensor([[1, 5, 7]])
    >>> logits = step(ids, torch.ones_like(ids), torch.arange(3)[None])  # the patched M0's
    >>> logits.shape == (1, model.config.vocab_size)
    True
    """
    tuned_step = cached_step(model, tuned_cache)
    base_step = cached_step(model, base_cache)
    if direction == "sufficiency":

        def step(input_ids, attention_mask, position_ids):
            tuned_acts: dict[int, torch.Tensor] = {}
            if neurons:
                with site.record(layers=neurons) as tuned_acts:
                    tuned_step(input_ids, attention_mask, position_ids)
            with switch.disabled(), site.patch(neurons, tuned_acts):
                return base_step(input_ids, attention_mask, position_ids)

        return step

    def restoring_step(input_ids, attention_mask, position_ids):
        base_acts: dict[int, torch.Tensor] = {}
        if neurons:
            with switch.disabled(), site.record(layers=neurons) as base_acts:
                base_step(input_ids, attention_mask, position_ids)
        with site.patch(neurons, base_acts):
            return tuned_step(input_ids, attention_mask, position_ids)

    return restoring_step


def patched_generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    neurons: Mapping[int, torch.Tensor],
    site: str,
    max_new_tokens: int,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    progress: IO | None = None,
    return_token_counts: bool = False,
    direction: str = "sufficiency",
) -> list[str] | tuple[list[str], list[int]]:
    """Greedy continuations of the base model patched with the fine-tuned model's ``neurons``
    (``direction="necessity"``: of the fine-tuned model with the base model's values restored
    on ``neurons``, the ``restore`` mitigation).

    ``model``: a peft model (fine-tuned = adapter enabled, base = adapter disabled).
    ``neurons``: layer -> LongTensor of coordinates of ``site`` (``"mlp_output"`` or
    ``"mlp_intermediate"``) to patch. Batching, padding, decoding and stopping are those of
    `polneurons.generation.greedy_generate`, so an empty set gives the base model's greedy text
    (``return_token_counts`` as there).

    >>> from polneurons.testing import tiny_lora, tiny_tokenizer
    >>> answers = patched_generate(tiny_lora(), tiny_tokenizer(), ["Guns", "Taxes"],
    ...     {1: torch.tensor([0, 2])}, "mlp_output", max_new_tokens=3)
    >>> len(answers), all(isinstance(a, str) for a in answers)
    (2, True)
    """
    from peft import PeftModel

    if direction not in DIRECTIONS:
        raise ValueError(f"unknown patching direction {direction!r} (use one of {DIRECTIONS})")
    if not isinstance(model, PeftModel):
        raise ModelError(
            f"activation patching needs the fine-tuned model as a peft adapter, got "
            f"{type(model).__name__}",
            "load the base model and attach the fine-tuned LoRA adapter (peft.PeftModel)",
        )
    neuron_site = NeuronSite(model, site)
    checked = neuron_site.check_neurons(neurons)
    switch = AdapterSwitch(model)
    if all(layer.disable_adapters for layer in switch.layers):
        raise ModelError(
            "the adapter is disabled, so the fine-tuned model would be the base model",
            "call patched_generate outside model.disable_adapter()",
        )

    def make_step() -> StepFn:
        return lockstep_step(
            model, switch, neuron_site, checked, new_cache(model), new_cache(model), direction
        )

    return generate_batches(
        model,
        tokenizer,
        prompts,
        make_step,
        max_new_tokens,
        batch_size,
        add_special_tokens,
        progress,
        desc=f"patched generate ({sum(len(v) for v in checked.values())} neurons, {direction})",
        return_token_counts=return_token_counts,
    )
