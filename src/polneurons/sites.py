"""Read, overwrite and gradient-block the activations of a neuron site (method.md: PNLAC).

One `NeuronSite` object per (model, site) serves activation dumps, patching and InhibitFT.
Each operation is a context manager that registers plain PyTorch hooks on enter and always
removes them on exit (also when the block raises); modules are never swapped.

- ``mlp_output``: forward hook on ``layers[l].mlp``; the hook sees and may replace its output.
- ``mlp_intermediate``: forward pre-hook on the down projection; the hook sees and may replace
  its input.

Under a peft LoRA wrapper the hooked modules are the LoRA-wrapping ones, so ``mlp_output``
includes the adapter's contribution and a LoRA'd down projection sees the patched input.
Which hooks fire does not depend on whether the adapter is enabled: to read the fine-tuned
model and patch the base model, use the two operations in separate, non-overlapping blocks.

Neuron sets are ``dict[int, torch.LongTensor]``: layer -> indices at the site.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from polneurons.architectures import (
    SITES,
    check_site,
    down_module,
    mlp_module,
    num_layers,
    site_width,
)
from polneurons.errors import ConfigError

__all__ = ["SITES", "NeuronSite", "StopForward", "forward_until"]

# A hook body: (layer, activation) -> replacement activation, or None to leave it unchanged.
_Edit = Callable[[int, torch.Tensor], torch.Tensor | None]


class StopForward(Exception):
    """Raised by a `NeuronSite.capture(stop_after=True)` hook once the last read site is kept.

    >>> issubclass(StopForward, Exception)
    True
    """


def forward_until(model: nn.Module, **inputs) -> None:
    """Run ``model(**inputs)`` inside a stopping capture: it ends at the capture's last layer.

    >>> from polneurons.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> ids = torch.tensor([[1, 5, 7, 9]])
    >>> with NeuronSite(model, "mlp_output").capture({0: [3]}, stop_after=True) as kept:
    ...     forward_until(model, input_ids=ids)
    >>> list(kept), tuple(kept[0].shape)
    ([0], (1, 4, 1))
    """
    try:
        model(**inputs)
    except StopForward:
        pass


class NeuronSite:
    """The activations of one neuron site of a model, layer by layer.

    Attributes:
        model: the model given (HF model or peft wrapper).
        site: ``"mlp_output"`` or ``"mlp_intermediate"``.
        n_layers: number of decoder layers.
        width: coordinates per layer (hidden size or intermediate size).

    >>> from polneurons.testing import tiny_model
    >>> site = NeuronSite(tiny_model("llama"), "mlp_intermediate")
    >>> site.n_layers, site.width
    (2, 64)
    """

    def __init__(self, model: nn.Module, site: str):
        self.model = model
        self.site = check_site(site)
        self.n_layers = num_layers(model)
        self.width = site_width(model, site)

    def module(self, layer: int) -> nn.Module:
        """The module hooked for ``layer``: the MLP (output) or the down projection (input).

        >>> from polneurons.testing import tiny_model
        >>> type(NeuronSite(tiny_model("llama"), "mlp_output").module(1)).__name__
        'LlamaMLP'
        """
        if self.site == "mlp_output":
            return mlp_module(self.model, layer)
        return down_module(self.model, layer)

    @contextlib.contextmanager
    def _hooked(self, layers: Iterable[int], edit: _Edit) -> Iterator[None]:
        """Run ``edit`` on the site activation of each of ``layers`` during forwards in the block."""
        handles = []
        try:
            for layer in layers:
                handles.append(self._register(layer, edit))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _register(self, layer: int, edit: _Edit) -> torch.utils.hooks.RemovableHandle:
        """Hook ``edit`` onto the MLP's output or the down projection's input of ``layer``."""
        module = self.module(layer)
        if self.site == "mlp_output":

            def output_hook(_module, _args, output):
                if not isinstance(output, torch.Tensor):
                    raise TypeError(f"MLP of layer {layer} returned {type(output).__name__}")
                return edit(layer, output)

            return module.register_forward_hook(output_hook)

        def input_hook(_module, args):
            new = edit(layer, args[0])
            return None if new is None else (new, *args[1:])

        return module.register_forward_pre_hook(input_hook)

    def check_neurons(self, neurons: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Validate a neuron set; return it with empty layers dropped and indices as LongTensors.

        >>> from polneurons.testing import tiny_model
        >>> NeuronSite(tiny_model("llama"), "mlp_output").check_neurons({0: [4, 2], 1: []})
        {0: tensor([4, 2])}
        """
        checked = {}
        for layer, indices in neurons.items():
            indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
            if not 0 <= int(layer) < self.n_layers:
                raise ConfigError(
                    f"neuron set names layer {layer} but the model has {self.n_layers} layers",
                    "recompute the neuron set for this model",
                )
            if indices.numel() == 0:
                continue
            if int(indices.min()) < 0 or int(indices.max()) >= self.width:
                raise ConfigError(
                    f"neuron indices at layer {layer} fall outside 0..{self.width - 1} "
                    f"(site {self.site})",
                    "recompute the neuron set for this model and neuron_site",
                )
            checked[int(layer)] = indices
        return checked

    @contextlib.contextmanager
    def record(
        self,
        layers: Iterable[int] | None = None,
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> Iterator[dict[int, torch.Tensor]]:
        """Record the site activations of ``layers`` (default: all) during forwards in the block.

        Yields a dict layer -> detached activation ``[batch, seq, width]`` of the latest forward.
        With ``callback``, each activation is passed to ``callback(layer, activation)`` instead
        and the dict stays empty (for streaming consumers that keep no tensors).

        >>> from polneurons.testing import tiny_model
        >>> model = tiny_model("llama")
        >>> with NeuronSite(model, "mlp_output").record() as acts:
        ...     _ = model(input_ids=torch.tensor([[1, 5, 7]]))
        >>> sorted(acts), tuple(acts[1].shape)
        ([0, 1], (1, 3, 32))
        """
        layers = range(self.n_layers) if layers is None else list(layers)
        recorded: dict[int, torch.Tensor] = {}

        def store(layer: int, act: torch.Tensor) -> None:
            if callback is None:
                recorded[layer] = act.detach()
            else:
                callback(layer, act.detach())

        with self._hooked(layers, store):
            yield recorded

    @contextlib.contextmanager
    def capture(
        self, neurons: Mapping[int, torch.Tensor], stop_after: bool = False
    ) -> Iterator[dict[int, torch.Tensor]]:
        """Keep coordinates ``neurons[l]`` of each forward in the block, gradient attached.

        Yields a dict layer -> ``[batch, seq, len(neurons[l])]`` of the latest forward (InhibitFT's
        ``anchor``: the tuned values the loss holds to the base model's). With ``stop_after``, a
        forward ends right after the last listed layer's site (`StopForward`, caught here and in
        `forward_until`): nothing downstream is computed, for a pass that only reads the site.

        >>> from polneurons.testing import tiny_model
        >>> model = tiny_model("llama")
        >>> with NeuronSite(model, "mlp_output").capture({1: [0, 2]}) as kept:
        ...     _ = model(input_ids=torch.tensor([[1, 5, 7]]))
        >>> tuple(kept[1].shape)
        (1, 3, 2)
        """
        neurons = self.check_neurons(neurons)
        last = max(neurons) if neurons else None
        kept: dict[int, torch.Tensor] = {}
        device_indices: dict[tuple[int, torch.device], torch.Tensor] = {}

        def keep(layer: int, act: torch.Tensor) -> None:
            key = (layer, act.device)
            if key not in device_indices:
                device_indices[key] = neurons[layer].to(act.device)
            kept[layer] = act.index_select(-1, device_indices[key])
            if stop_after and layer == last:
                raise StopForward

        with self._hooked(neurons, keep):
            yield kept

    @contextlib.contextmanager
    def patch(
        self, neurons: Mapping[int, torch.Tensor], source: Mapping[int, torch.Tensor]
    ) -> Iterator[None]:
        """Overwrite coordinates ``neurons[l]`` of layer ``l`` with ``source[l][..., neurons[l]]``.

        ``source[l]`` must have the shape of the site activation of each forward in the block
        (``[batch, seq, width]``). It is read at forward time, so a caller may refill ``source``
        between forwards (as lockstep patching does). Other coordinates are left untouched.

        >>> from polneurons.testing import tiny_model
        >>> model = tiny_model("llama")
        >>> site, zeros = NeuronSite(model, "mlp_output"), {0: torch.zeros(1, 3, 32)}
        >>> with site.patch({0: [3]}, zeros), site.record([0]) as acts:
        ...     _ = model(input_ids=torch.tensor([[1, 5, 7]]))
        >>> float(acts[0][..., 3].abs().sum())
        0.0
        """
        neurons = self.check_neurons(neurons)
        device_indices: dict[tuple[int, torch.device], torch.Tensor] = {}

        def overwrite(layer: int, act: torch.Tensor) -> torch.Tensor:
            replacement = source[layer]
            if replacement.shape != act.shape:
                raise ValueError(
                    f"patch source for layer {layer} has shape {tuple(replacement.shape)}, "
                    f"the activation has {tuple(act.shape)}"
                )
            key = (layer, act.device)
            if key not in device_indices:
                device_indices[key] = neurons[layer].to(act.device)
            indices = device_indices[key]
            values = replacement.index_select(-1, indices).to(act.dtype)
            return act.index_copy(-1, indices, values)

        with self._hooked(neurons, overwrite):
            yield

    @contextlib.contextmanager
    def block_grad(self, neurons: Mapping[int, torch.Tensor]) -> Iterator[None]:
        """Stop gradients through coordinates ``neurons[l]`` (method.md: InhibitFT, ``stopgrad``).

        Forward values are unchanged; in the backward pass no gradient flows into the listed
        coordinates (``act = where(mask, act.detach(), act)``).

        >>> from polneurons.testing import tiny_model
        >>> model = tiny_model("llama")
        >>> with NeuronSite(model, "mlp_output").block_grad({0: [3]}):
        ...     loss = model(input_ids=torch.tensor([[1, 5, 7]])).logits.sum()
        >>> loss.requires_grad
        True
        """
        neurons = self.check_neurons(neurons)
        device_masks: dict[tuple[int, torch.device], torch.Tensor] = {}

        def stop_gradient(layer: int, act: torch.Tensor) -> torch.Tensor:
            key = (layer, act.device)
            if key not in device_masks:
                mask = torch.zeros(self.width, dtype=torch.bool, device=act.device)
                mask[neurons[layer].to(act.device)] = True
                device_masks[key] = mask
            return torch.where(device_masks[key], act.detach(), act)

        with self._hooked(neurons, stop_gradient):
            yield
