"""The teacher-forced causal readout (method.md: Teacher-forced readout): the judge-free stance
S_ll of held-out answer pairs, scored under an intervention on a neuron set instead of generated
and judged.

For a neuron set X of the site:

- *sufficiency*: ``M_s``'s activations on X written into ``M0`` (what activation patching does
  to generation); recovered_ll = (S_ll(M0 + X) - S_ll(M0)) / (S_ll(M_s) - S_ll(M0));
- *necessity*: ``M0``'s activations on X written into ``M_s``;
  removed_ll = (S_ll(M_s) - S_ll(M_s - X)) / (S_ll(M_s) - S_ll(M0)).

Teacher forcing puts both models on the same tokens, so the values written are those of the
same positions of the same sequence: lockstep patching without decoding. ``M0``'s and
``M_s``'s own passes (with their site activations) are made once per batch and shared by every
set; each set then costs one forward per direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from polneurons.errors import ModelError
from polneurons.likelihood import pair_sequences, scored_batches, stance_of_pairs
from polneurons.models import AdapterSwitch
from polneurons.sites import NeuronSite

DIRECTIONS = ("sufficiency", "necessity")
# the rows of the models' own passes in `intervened_stance`'s result
BASE, TUNED = "M0", "M_s"


def intervened_stance(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str, str]],
    site: str,
    sets: Mapping[str, Mapping[int, torch.Tensor]],
    batch_size: int = 8,
    add_special_tokens: bool = True,
    answer_tokens: int | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Per pair, S_ll (`likelihood.loglik_stance`) of ``M0`` and ``M_s`` and of each neuron set
    in both directions.

    ``model``: a peft model (``M_s`` = adapter enabled, ``M0`` = adapter disabled). ``sets``:
    name -> (layer -> coordinates of ``site``). Returns {(BASE, ""): ..., (TUNED, ""): ...,
    (name, "sufficiency"): ..., (name, "necessity"): ...}, arrays in the order of ``pairs``.
    ``answer_tokens``: score only the first that many tokens of each answer (None: all).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise ModelError(
            f"the readout needs the fine-tuned model as a peft adapter, got {type(model).__name__}",
            "load the base model and attach the fine-tuned LoRA adapter (peft.PeftModel)",
        )
    neuron_site = NeuronSite(model, site)
    checked = {name: neuron_site.check_neurons(neurons) for name, neurons in sets.items()}
    layers = sorted({layer for neurons in checked.values() for layer in neurons})
    switch = AdapterSwitch(model)
    texts = pair_sequences(pairs)
    device = next(model.parameters()).device
    keys = [(BASE, ""), (TUNED, "")] + [(n, d) for n in checked for d in DIRECTIONS]
    means = {key: np.empty(len(texts)) for key in keys}
    batches = scored_batches(
        tokenizer, texts, batch_size, add_special_tokens, device, answer_tokens
    )
    with torch.inference_mode():
        for batch in batches:
            with switch.disabled(), neuron_site.record(layers) as recorded:
                base_logits = batch.logits(model)
            base_acts = dict(recorded)
            with neuron_site.record(layers) as recorded:
                tuned_logits = batch.logits(model)
            tuned_acts = dict(recorded)
            base = batch.mean_logprobs(base_logits)
            tuned = batch.mean_logprobs(tuned_logits)
            means[BASE, ""][batch.indices] = base
            means[TUNED, ""][batch.indices] = tuned
            for name, neurons in checked.items():
                if not neurons:  # nothing written: the models themselves
                    means[name, "sufficiency"][batch.indices] = base
                    means[name, "necessity"][batch.indices] = tuned
                    continue
                with switch.disabled(), neuron_site.patch(neurons, tuned_acts):
                    logits = batch.logits(model)
                means[name, "sufficiency"][batch.indices] = batch.mean_logprobs(logits)
                with neuron_site.patch(neurons, base_acts):
                    logits = batch.logits(model)
                means[name, "necessity"][batch.indices] = batch.mean_logprobs(logits)
    return {key: stance_of_pairs(values) for key, values in means.items()}


def readout_share(direction: str, s_x, s_base, s_tuned):
    """method.md: Teacher-forced readout. recovered_ll (sufficiency) = (S(M0 + X) - S(M0)) /
    (S(M_s) - S(M0)); removed_ll (necessity) = (S(M_s) - S(M_s - X)) / (S(M_s) - S(M0)).
    NaN where fine-tuning did not move S_ll. Works on floats and numpy arrays alike.

    >>> readout_share("sufficiency", 0.3, 0.0, 1.0), readout_share("necessity", 0.3, 0.0, 1.0)
    (0.3, 0.7)
    """
    shift = np.asarray(s_tuned, dtype=float) - np.asarray(s_base, dtype=float)
    if direction == "sufficiency":
        moved = np.asarray(s_x, dtype=float) - np.asarray(s_base, dtype=float)
    elif direction == "necessity":
        moved = np.asarray(s_tuned, dtype=float) - np.asarray(s_x, dtype=float)
    else:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(shift != 0, moved / np.where(shift != 0, shift, 1.0), np.nan)
    return float(share) if share.ndim == 0 else share
