"""Registry of supported architectures: where the decoder layers, MLPs and projections live.

Every neuron-level operation (activation dumps, patching, InhibitFT) reaches a model's
internals only through this module, so a new family needs one `ArchSpec` entry here and
nothing else. Paths are attribute paths on the unwrapped Hugging Face model; under a peft
LoRA wrapper the same paths resolve to the LoRA-wrapping modules, which is what hooks and
parameter freezing need (the wrapper's input and output include LoRA's contribution).

The two neuron sites (method.md: PNLAC):

- ``mlp_output``: coordinate ``i`` of the output of ``layers[l].<mlp>`` (width ``hidden_size``).
- ``mlp_intermediate``: coordinate ``j`` of the input of the down projection,
  ``act(in_proj(x)) * mul_proj(x)`` for gated MLPs, ``act(in_proj(x))`` otherwise
  (width ``intermediate_size``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from torch import nn

from polneurons.errors import ConfigError, ModelError

SITES = ("mlp_output", "mlp_intermediate")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Where one architecture family keeps its MLP parts (attribute paths, dot-separated).

    Attributes:
        layers: path from the HF model to the ``nn.ModuleList`` of decoder layers.
        mlp: path from a decoder layer to its MLP; the ``mlp_output`` site is this module's output.
        down: path from the MLP to the down projection; the ``mlp_intermediate`` site is this
            module's input, and its output coordinate ``i`` is ``mlp_output`` coordinate ``i``.
        in_proj: path from the MLP to the projection whose output goes through the activation
            (``gate_proj`` in gated MLPs, ``c_fc`` in GPT-2, ``dense_h_to_4h`` in GPT-NeoX).
        mul_proj: path from the MLP to the projection multiplied elementwise with the activation
            (``up_proj`` in gated MLPs); ``None`` for non-gated MLPs.
        act: path from the MLP to its activation module.
        transposed: True when projection weights are stored ``[in, out]`` (GPT-2's ``Conv1D``)
            instead of ``nn.Linear``'s ``[out, in]``. Then output coordinate ``i`` is written by
            column ``i`` of the weight (axis 1), not row ``i`` (axis 0).
    """

    layers: str
    mlp: str = "mlp"
    down: str = "down_proj"
    in_proj: str = "gate_proj"
    mul_proj: str | None = "up_proj"
    act: str = "act_fn"
    transposed: bool = False

    @property
    def out_axis(self) -> int:
        """Axis of a projection's weight that indexes its output coordinates."""
        return 1 if self.transposed else 0

    @property
    def in_axis(self) -> int:
        """Axis of a projection's weight that indexes its input coordinates."""
        return 0 if self.transposed else 1


_GATED = ArchSpec(layers="model.layers")
ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _GATED,
    "qwen2": _GATED,
    "mistral": _GATED,
    "gemma": _GATED,
    "gemma2": _GATED,
    "gemma3_text": _GATED,
    # Multimodal Gemma 3 (Gemma3ForConditionalGeneration): the text decoder sits one level deeper.
    "gemma3": dataclasses.replace(_GATED, layers="model.language_model.layers"),
    "gpt2": ArchSpec(
        layers="transformer.h",
        down="c_proj",
        in_proj="c_fc",
        mul_proj=None,
        act="act",
        transposed=True,
    ),
    "gpt_neox": ArchSpec(
        layers="gpt_neox.layers",
        down="dense_4h_to_h",
        in_proj="dense_h_to_4h",
        mul_proj=None,
        act="act",
    ),
}


class WriterSlice(NamedTuple):
    """A parameter whose slices along ``axis`` write the coordinates of one neuron site.

    ``param.index_select(axis, neurons)`` are exactly the entries that write those neurons;
    ``name`` is the parameter's qualified name in ``model.named_parameters()`` of the model
    given to `writer_params` (so it matches optimizer parameter groups).
    """

    name: str
    param: nn.Parameter
    axis: int


def check_site(site: str) -> str:
    """Return ``site`` if it is a known neuron site, else raise a one-line ConfigError."""
    if site not in SITES:
        raise ConfigError(f"unknown neuron site {site!r}", f"use one of: {', '.join(SITES)}")
    return site


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying HF ``PreTrainedModel`` of ``model``, through peft wrappers if any.

    LoRA layers injected by peft stay in place (they are part of the returned model's modules).
    """
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTuner

    while True:
        if isinstance(model, PeftModel):
            model = model.get_base_model()
        elif isinstance(model, BaseTuner):
            model = model.model
        else:
            return model


def arch_spec(model: nn.Module) -> ArchSpec:
    """The `ArchSpec` of ``model`` (HF model or peft wrapper); ModelError if unsupported."""
    model_type = getattr(getattr(unwrap(model), "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ModelError(
            f"model type {model_type!r} is not supported for neuron-level analysis",
            f"use a model of type: {', '.join(sorted(ARCHITECTURES))}",
        )
    return ARCHITECTURES[model_type]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of ``model``, in order."""
    return list(unwrap(model).get_submodule(arch_spec(model).layers))


def num_layers(model: nn.Module) -> int:
    """The number of decoder layers."""
    return len(decoder_layers(model))


def _layer(model: nn.Module, layer: int) -> nn.Module:
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ConfigError(
            f"layer {layer} does not exist (the model has {len(layers)} layers)",
            f"use a layer index in 0..{len(layers) - 1}",
        )
    return layers[layer]


def mlp_module(model: nn.Module, layer: int) -> nn.Module:
    """The MLP of decoder layer ``layer``; its output is the ``mlp_output`` site."""
    return _layer(model, layer).get_submodule(arch_spec(model).mlp)


def down_module(model: nn.Module, layer: int) -> nn.Module:
    """The down projection of layer ``layer`` (LoRA wrapper if any); its input is ``mlp_intermediate``."""
    return mlp_module(model, layer).get_submodule(arch_spec(model).down)


def _base_layer(module: nn.Module) -> nn.Module:
    """The wrapped layer of a peft tuner layer, or ``module`` itself."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def site_width(model: nn.Module, site: str) -> int:
    """Number of coordinates of ``site`` per layer (hidden size or intermediate size)."""
    check_site(site)
    spec = arch_spec(model)
    weight = _base_layer(down_module(model, 0)).weight
    axis = spec.out_axis if site == "mlp_output" else spec.in_axis
    return weight.shape[axis]


def _projection_writers(module: nn.Module, spec: ArchSpec, side: str) -> list[tuple[str, int]]:
    """(local parameter name, axis) of the slices of a projection that write its ``side`` coordinates.

    ``side`` is ``"out"`` (output coordinate ``i``: weight rows, or columns when transposed, and
    the bias entry) or ``"in"`` (input coordinate ``j``: the weight's other axis). Under LoRA,
    ``delta_W = B @ A``: output coordinate ``i`` is written by row ``i`` of every ``lora_B``
    (and its bias), input coordinate ``j`` by column ``j`` of every ``lora_A``.
    """
    from peft.tuners.lora import LoraLayer

    base = _base_layer(module)
    prefix = "base_layer." if base is not module else ""
    writers = []
    if side == "out":
        writers.append((prefix + "weight", spec.out_axis))
        if getattr(base, "bias", None) is not None:
            writers.append((prefix + "bias", 0))
    else:
        writers.append((prefix + "weight", spec.in_axis))
    if base is module:
        return writers
    if not isinstance(module, LoraLayer) or len(module.lora_magnitude_vector) > 0:
        raise ModelError(
            f"adapter layer {type(module).__name__} is not supported for neuron inhibition",
            "use plain LoRA adapters (no DoRA, no other peft tuner types) on the MLP projections",
        )
    for adapter in module.lora_A:
        if side == "out":
            writers.append((f"lora_B.{adapter}.weight", 0))
            if module.lora_B[adapter].bias is not None:
                writers.append((f"lora_B.{adapter}.bias", 0))
        else:
            writers.append((f"lora_A.{adapter}.weight", 1))
    return writers


def writer_params(model: nn.Module, site: str, layer: int) -> list[WriterSlice]:
    """The parameter slices that write the coordinates of ``site`` at ``layer`` (method.md: InhibitFT).

    For each returned ``WriterSlice(name, param, axis)``, the entries
    ``param.index_select(axis, neurons)`` write neurons ``neurons`` of that site and layer:

    - ``mlp_output`` coordinate ``i``: row ``i`` of the down projection's weight (column ``i``
      for GPT-2's transposed ``Conv1D``), entry ``i`` of its bias, and row ``i`` of each
      LoRA ``lora_B`` on it (plus its bias, if any).
    - ``mlp_intermediate`` coordinate ``j``: column ``j`` of the down projection's weight
      (row ``j`` for ``Conv1D``) and of each ``lora_A`` on it; row ``j`` of ``in_proj`` and
      ``mul_proj`` (``gate_proj``/``up_proj``; ``c_fc``; ``dense_h_to_4h``), their bias
      entries, and row ``j`` of their ``lora_B``.

    Frozen base-weight slices stay exactly as they are. For LoRA, freezing a ``lora_B`` row
    keeps that row of ``B @ A`` exactly zero, because peft initialises ``B`` to zero. Freezing a
    ``lora_A`` column does NOT keep column ``j`` of ``B @ A`` fixed (``B`` still trains) unless
    that column of ``lora_A`` is zero; a caller that needs exactness there must zero it first.
    Frozen parameters (``requires_grad=False``) are included; callers filter as needed.
    Raises ModelError for adapter types other than plain LoRA (e.g. DoRA).
    """
    check_site(site)
    spec = arch_spec(model)
    mlp = mlp_module(model, layer)
    if site == "mlp_output":
        parts = [(spec.down, "out")]
    else:
        parts = [(spec.down, "in"), (spec.in_proj, "out")]
        if spec.mul_proj is not None:
            parts.append((spec.mul_proj, "out"))
    names = {id(param): name for name, param in model.named_parameters(remove_duplicate=False)}
    slices = []
    for path, side in parts:
        module = mlp.get_submodule(path)
        for local_name, axis in _projection_writers(module, spec, side):
            param = module.get_parameter(local_name)
            slices.append(WriterSlice(names[id(param)], param, axis))
    return slices
