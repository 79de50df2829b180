"""InhibitFT (method.md: InhibitFT): fine-tuning in which the inhibited neurons cannot be learned through.

`finetune(..., inhibit={"strategy", "site", "neurons"[, "anchor_weight"]})` applies one of three
strategies:

- ``freeze_rows``: the parameter slices that write the inhibited neurons (architectures.
  writer_params) get no update. Their gradient is zeroed after each backward and their values
  are copied back after each optimizer step, so they stay bit-identical even under AdamW's
  weight decay (decay is effectively 0 on them).
- ``stopgrad``: no gradient flows through the inhibited activations (sites.NeuronSite.block_grad
  is active during every training forward).

The authors' scripts hooked frozen base weights, so their InhibitFT silently equalled vanilla FT
(method.md: Where we differ). Here that cannot happen: `inhibition_problem` refuses such a configuration from the
names alone, and `Inhibition` checks the actual model and neuron set, refusing any inhibited
layer on which the strategy cannot act (no trainable writer for freeze_rows, no trainable
parameter upstream for stopgrad).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from polneurons.architectures import (
    ARCHITECTURES,
    SITES,
    arch_spec,
    decoder_layers,
    down_module,
    unwrap,
    writer_params,
)
from polneurons.errors import ConfigError
from polneurons.sites import NeuronSite

STRATEGIES = ("freeze_rows", "stopgrad", "anchor")
# A base RMS below this (a dead neuron) is raised to it, so the anchor term stays finite.
MIN_BASE_RMS = 1e-6
# Output heads of the supported architectures: downstream of every neuron site.
OUTPUT_HEADS = ("lm_head", "embed_out")


def _mlp_writer_names(site: str, model: nn.Module | None) -> set[str]:
    """Leaf names of the projections whose slices write `site` (all architectures if no model)."""
    specs = [arch_spec(model)] if model is not None else ARCHITECTURES.values()
    names = set()
    for spec in specs:
        names.add(spec.down)
        if site == "mlp_intermediate":
            names.update(n for n in (spec.in_proj, spec.mul_proj) if n is not None)
    return names


def _output_head_names(model: nn.Module | None) -> set[str]:
    if model is None:
        return set(OUTPUT_HEADS)
    base = unwrap(model)
    head = base.get_output_embeddings()
    return {name.rsplit(".", 1)[-1] for name, module in base.named_modules() if module is head}


def inhibition_problem(
    site: str,
    strategy: str,
    method: str,
    target_modules: list[str],
    model: nn.Module | None = None,
) -> str | None:
    """A one-line reason why this inhibition cannot act on training, or None if it can.

    Works from names alone (for config validation, model=None: module names of every supported
    architecture count); with `model`, from that architecture's names. Full fine-tuning trains
    every parameter, so both strategies always act. With LoRA (targets apply in every layer):

    - freeze_rows is impossible when no target writes the site: the down projection for
      mlp_output; the down (its columns), gate and up projections for mlp_intermediate. The
      paper's q_proj/v_proj LoRA is such a case: nothing would be frozen and InhibitFT would
      equal vanilla FT (the authors' bug, method.md: Where we differ). Merely weak, and accepted: freezing
      the writers does not fix the neuron's value, which still moves with the trained
      attention (and gate/up at mlp_output) feeding it.
    - stopgrad acts whenever some trainable parameter lies upstream of a site, because only
      upstream parameters receive gradient through it. Attention precedes the MLP in the same
      layer, so q_proj/v_proj LoRA suffices (weak: only the attention paths are blocked, and
      the neuron still drifts as its inputs change). Gradients of later layers never pass
      through the site, so the one case impossible from names is LoRA on the output head only.
      (Down-projection-only LoRA at mlp_intermediate has nothing upstream in layer 0; that
      depends on the neuron set and is refused by `Inhibition`.)
    - anchor acts under the same condition as stopgrad (its gradient reaches only upstream
      parameters) and needs LoRA: full fine-tuning keeps no copy of M0 to read the targets from.
    """
    if strategy not in STRATEGIES:
        return f"unknown inhibition strategy {strategy!r} (use one of: {', '.join(STRATEGIES)})"
    if site not in SITES:
        return f"unknown neuron site {site!r} (use one of: {', '.join(SITES)})"
    if strategy == "anchor" and method != "lora":
        return (
            "anchor needs LoRA (finetune.method: lora): M0's values are read from the same "
            "model with its adapter off"
        )
    if method == "full":
        return None
    targets = {name.rsplit(".", 1)[-1] for name in target_modules}
    if strategy == "freeze_rows":
        writers = _mlp_writer_names(site, model)
        if not targets & writers:
            return (
                f"freeze_rows at {site} with LoRA on {', '.join(target_modules)} cannot act: "
                f"no trained parameter writes the inhibited neurons (written by "
                f"{', '.join(sorted(writers))}), so InhibitFT would equal vanilla FT"
            )
    elif targets <= _output_head_names(model):
        return (
            f"stopgrad with LoRA on {', '.join(target_modules)} only cannot act: no trained "
            f"parameter is upstream of the inhibited neurons, so InhibitFT would equal vanilla FT"
        )
    return None


class FrozenSlice:
    """Entries `index` along `axis` of a trainable parameter, held at their initial values."""

    def __init__(self, name: str, param: nn.Parameter, axis: int, index: torch.Tensor):
        self.name = name
        self.param = param
        self.axis = axis
        self.index = index.to(param.device)
        self.initial = param.detach().index_select(axis, self.index).clone()

    def mask_gradient(self) -> None:
        if self.param.grad is not None:
            self.param.grad.index_fill_(self.axis, self.index, 0)

    @torch.no_grad()
    def restore(self) -> None:
        self.param.index_copy_(self.axis, self.index, self.initial)


def _has_trainable_upstream(model: nn.Module, site: str, layer: int) -> bool:
    """True if a trainable parameter lies before `site` of `layer` in the forward pass.

    Upstream: the input embeddings, earlier layers, and layer `layer` itself except its down
    projection for mlp_intermediate (exact for LoRA on linear layers and for full FT; a norm
    after the MLP would be counted as upstream of mlp_output).
    """
    downstream = set()
    if site == "mlp_intermediate":
        downstream = {id(p) for p in down_module(model, layer).parameters()}
    modules = [unwrap(model).get_input_embeddings(), *decoder_layers(model)[: layer + 1]]
    return any(p.requires_grad and id(p) not in downstream for m in modules for p in m.parameters())


class Inhibition:
    """One InhibitFT strategy bound to a model about to be trained (method.md: InhibitFT).

    Build it after the model is made trainable (LoRA injected or full FT enabled). The training
    loop runs its forwards inside `active()`, calls `mask_gradients()` after the backward and
    `restore_frozen()` after the optimizer step; with ``anchor`` it calls `calibrate()` on the
    training set before the first step, and `finetune.accumulate_gradients` adds the anchor
    term (`base_values`, `NeuronSite.capture`, `anchor_term`). ConfigError if the strategy
    cannot act on some inhibited layer.

    freeze_rows with LoRA at mlp_intermediate zeroes columns `j` of every trainable `lora_A`
    of the down projection before training: column `j` of its update `B @ A` is `B @ A[:, j]`,
    and `B` trains, so it stays exactly zero only if `A[:, j]` is zero and frozen. (Rows of
    `lora_B` need no such step: peft initialises `B` to zero.) The adapter's initial output is
    unchanged, since `B` starts at zero.
    """

    def __init__(self, model: nn.Module, spec: dict):
        self.strategy = spec["strategy"]
        self.site = spec["site"]
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown inhibition strategy {self.strategy!r}",
                f"use one of: {', '.join(STRATEGIES)}",
            )
        self.neuron_site = NeuronSite(model, self.site)
        checked = self.neuron_site.check_neurons(spec["neurons"])
        self.neurons = {layer: index.unique() for layer, index in checked.items()}
        if not self.neurons:
            raise ConfigError(
                "the inhibited neuron set is empty", "check the neuron selection that produced it"
            )
        self.frozen: list[FrozenSlice] = []
        for layer, index in self.neurons.items():
            if self.strategy == "freeze_rows":
                self._freeze_writers(model, layer, index)
            elif not _has_trainable_upstream(model, self.site, layer):
                raise ConfigError(
                    f"{self.strategy} at {self.site} of layer {layer} cannot act: no trainable "
                    "parameter lies upstream of it",
                    "train the attention or MLP projections too (lora.target_modules)",
                )
        self.anchor_weight = None
        self.last_anchor: float | None = None  # the latest step's anchor term (train_step)
        self.base_rms: dict[int, torch.Tensor] | None = None
        if self.strategy == "anchor":
            self._prepare_anchor(model, spec)

    def _prepare_anchor(self, model: nn.Module, spec: dict) -> None:
        from peft import PeftModel

        from polneurons.models import AdapterSwitch

        weight = spec.get("anchor_weight")
        if weight is None or not weight > 0:
            raise ConfigError(
                f"inhibitft.anchor_weight must be > 0, got {weight}",
                "set inhibitft.anchor_weight to a positive number (the anchor's lambda)",
            )
        if not isinstance(model, PeftModel):
            raise ConfigError(
                "anchor needs a LoRA model: M0's values are read with the adapter off",
                "use finetune.method: lora for InhibitFT",
            )
        self.anchor_weight = float(weight)
        self.model = model
        self.switch = AdapterSwitch(model)

    @property
    def anchored(self) -> bool:
        """Whether the training loss carries the anchor term (strategy ``anchor``)."""
        return self.strategy == "anchor"

    @property
    def n_neurons(self) -> int:
        return sum(len(index) for index in self.neurons.values())

    @torch.no_grad()
    def base_values(self, batch: dict) -> dict[int, torch.Tensor]:
        """M0's values of the anchored neurons on `batch` (adapter off, stopped after the last
        anchored layer): layer -> ``[batch, seq, neurons]``."""
        from polneurons.sites import forward_until

        with (
            self.switch.disabled(),
            self.neuron_site.capture(self.neurons, stop_after=True) as kept,
        ):
            forward_until(
                self.model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
        return dict(kept)

    def calibrate(self, batches) -> None:
        """The base RMS of each anchored neuron over every non-padding token of `batches` (the
        training set), read from M0; the anchor term divides by its square."""
        squares = {layer: 0.0 for layer in self.neurons}
        count = 0
        for batch in batches:
            mask = batch["attention_mask"].bool()
            for layer, values in self.base_values(batch).items():
                squares[layer] = squares[layer] + values[mask].double().pow(2).sum(0)
            count += int(mask.sum())
        self.base_rms = {
            layer: (total / max(count, 1)).sqrt().float().clamp_min(MIN_BASE_RMS)
            for layer, total in squares.items()
        }

    def anchor_term(
        self, tuned: dict[int, torch.Tensor], base: dict[int, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """Sum over the anchored neurons and the non-padding tokens (`mask`) of
        ((h_Ms - h_M0) / base RMS)^2 (method.md: InhibitFT, ``anchor``); the caller divides by
        (tokens x neurons) of the step for the mean."""
        if self.base_rms is None:
            raise RuntimeError("calibrate() the anchor before training")
        keep = mask.bool()
        total = None
        for layer, values in tuned.items():
            rms = self.base_rms[layer].to(values.device)
            deviation = (values[keep].float() - base[layer][keep].float()) / rms
            part = deviation.pow(2).sum()
            total = part if total is None else total + part
        return total

    def _freeze_writers(self, model: nn.Module, layer: int, index: torch.Tensor) -> None:
        trainable = [w for w in writer_params(model, self.site, layer) if w.param.requires_grad]
        if not trainable:
            raise ConfigError(
                f"freeze_rows at {self.site} of layer {layer} cannot act: no trainable parameter "
                "writes those neurons",
                "train the MLP projections too (lora.target_modules)",
            )
        for writer in trainable:
            if ".lora_A." in writer.name:  # see the class docstring
                with torch.no_grad():
                    writer.param.index_fill_(writer.axis, index.to(writer.param.device), 0)
            self.frozen.append(FrozenSlice(writer.name, writer.param, writer.axis, index))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Forwards inside this block are training forwards (stopgrad blocks gradients here)."""
        if self.strategy == "stopgrad":
            with self.neuron_site.block_grad(self.neurons):
                yield
        else:
            yield

    def mask_gradients(self) -> None:
        """Zero the gradient of every frozen slice (call between backward and optimizer step).

        AdamW's moments for these entries then stay zero, so its update there is pure weight decay,
        which `restore_frozen` undoes.
        """
        for frozen in self.frozen:
            frozen.mask_gradient()

    def restore_frozen(self) -> None:
        """Copy the frozen slices' initial values back (call after each optimizer step)."""
        for frozen in self.frozen:
            frozen.restore()

    def summary(self) -> dict:
        """What is inhibited, for the training log."""
        summary = {
            "strategy": self.strategy,
            "site": self.site,
            "neurons_per_layer": {layer: len(index) for layer, index in self.neurons.items()},
            "frozen_parameters": sorted({f.name for f in self.frozen}),
            "frozen_entries": sum(f.initial.numel() for f in self.frozen),
        }
        if self.anchored:
            summary["anchor_weight"] = self.anchor_weight
        return summary
