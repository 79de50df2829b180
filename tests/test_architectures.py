import types

import pytest
import torch

from polneurons.architectures import (
    ARCHITECTURES,
    SITES,
    arch_spec,
    check_site,
    decoder_layers,
    down_module,
    mlp_module,
    num_layers,
    site_width,
    unwrap,
    writer_params,
)
from polneurons.errors import ConfigError, ModelError
from polneurons.sites import NeuronSite
from polneurons.testing import ARCHS, tiny_lora, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_every_tiny_architecture_resolves_layers_mlp_and_widths(arch):
    model = tiny_model(arch)
    assert arch_spec(model) is ARCHITECTURES[arch]
    assert num_layers(model) == len(decoder_layers(model)) == 2
    assert site_width(model, "mlp_output") == 32
    assert site_width(model, "mlp_intermediate") == 64
    assert mlp_module(model, 1) is decoder_layers(model)[1].get_submodule(arch_spec(model).mlp)
    assert down_module(model, 1) in list(mlp_module(model, 1).children())


def test_unwrap_reaches_the_hf_model_through_peft_and_paths_resolve_to_lora_wrappers():
    peft_model = tiny_lora("llama")
    hf_model = unwrap(peft_model)
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    assert unwrap(hf_model) is hf_model
    assert arch_spec(peft_model) is ARCHITECTURES["llama"]
    assert hasattr(down_module(peft_model, 0), "lora_A")
    assert site_width(peft_model, "mlp_intermediate") == 64


def test_unsupported_model_type_is_a_one_line_model_error_listing_supported_types():
    model = torch.nn.Linear(2, 2)
    model.config = types.SimpleNamespace(model_type="bert")
    with pytest.raises(ModelError) as info:
        arch_spec(model)
    message = str(info.value)
    assert "\n" not in message
    assert "'bert'" in message
    assert all(model_type in message for model_type in ARCHITECTURES)


def test_unknown_site_and_missing_layer_are_one_line_config_errors(llama):
    with pytest.raises(ConfigError, match="mlp_output, mlp_intermediate") as info:
        check_site("residual")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="0..1"):
        mlp_module(llama, 2)
    assert SITES == ("mlp_output", "mlp_intermediate")


def _perturb(slices, neuron: int, generator):
    with torch.no_grad():
        for writer in slices:
            view = writer.param.narrow(writer.axis, neuron, 1)
            view.add_(torch.randn(view.shape, generator=generator))


def _site_and_output(model, layer, input_ids):
    """(intermediate, mlp output) at ``layer`` for one forward."""
    with NeuronSite(model, "mlp_intermediate").record([layer]) as inter:
        with NeuronSite(model, "mlp_output").record([layer]) as out:
            model(input_ids=input_ids)
    return inter[layer], out[layer]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "lora"])
def test_writer_slices_of_mlp_output_neuron_change_only_that_coordinate(arch, wrapped):
    model = tiny_lora(arch) if wrapped else tiny_model(arch)
    input_ids = torch.randint(3, 512, (2, 5), generator=torch.Generator().manual_seed(0))
    layer, neuron = 1, 7
    slices = writer_params(model, "mlp_output", layer)
    names = dict(model.named_parameters())
    assert all(names[s.name] is s.param for s in slices)
    assert any("lora_B" in s.name for s in slices) == wrapped
    _, before = _site_and_output(model, layer, input_ids)
    _perturb(slices, neuron, torch.Generator().manual_seed(1))
    _, after = _site_and_output(model, layer, input_ids)
    others = torch.arange(32) != neuron
    assert torch.equal(before[..., others], after[..., others])
    assert not torch.equal(before[..., neuron], after[..., neuron])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "lora"])
def test_writer_slices_of_intermediate_neuron_act_only_through_that_neuron(arch, wrapped):
    model = tiny_lora(arch) if wrapped else tiny_model(arch)
    input_ids = torch.randint(3, 512, (2, 5), generator=torch.Generator().manual_seed(0))
    layer, neuron = 0, 11
    slices = writer_params(model, "mlp_intermediate", layer)
    assert any("lora_A" in s.name for s in slices) == wrapped
    site = NeuronSite(model, "mlp_intermediate")
    silence = {layer: torch.tensor([neuron])}
    zeros = {layer: torch.zeros(2, 5, 64)}
    inter_before, _ = _site_and_output(model, layer, input_ids)
    with site.patch(silence, zeros):
        _, silenced_before = _site_and_output(model, layer, input_ids)

    _perturb(slices, neuron, torch.Generator().manual_seed(1))
    inter_after, _ = _site_and_output(model, layer, input_ids)
    with site.patch(silence, zeros):
        _, silenced_after = _site_and_output(model, layer, input_ids)
    others = torch.arange(64) != neuron
    # The slices compute neuron `neuron` and nothing else ...
    assert torch.equal(inter_before[..., others], inter_after[..., others])
    assert not torch.equal(inter_before[..., neuron], inter_after[..., neuron])
    # ... and their down-projection part reads only that neuron: silenced, the output is unchanged.
    assert torch.equal(silenced_before, silenced_after)


def test_writer_slices_name_rows_and_columns_of_linear_and_transposed_conv1d_weights():
    llama = tiny_lora("llama")
    prefix = "base_model.model.model.layers.1.mlp."
    assert [
        (s.name.removeprefix(prefix), s.axis) for s in writer_params(llama, "mlp_output", 1)
    ] == [
        ("down_proj.base_layer.weight", 0),
        ("down_proj.lora_B.default.weight", 0),
    ]
    assert [
        (s.name.removeprefix(prefix), s.axis) for s in writer_params(llama, "mlp_intermediate", 1)
    ] == [
        ("down_proj.base_layer.weight", 1),
        ("down_proj.lora_A.default.weight", 1),
        ("gate_proj.base_layer.weight", 0),
        ("gate_proj.lora_B.default.weight", 0),
        ("up_proj.base_layer.weight", 0),
        ("up_proj.lora_B.default.weight", 0),
    ]
    gpt2 = tiny_model("gpt2")  # Conv1D stores weight [in, out]: output coordinates are columns
    prefix = "transformer.h.0.mlp."
    assert [
        (s.name.removeprefix(prefix), s.axis) for s in writer_params(gpt2, "mlp_output", 0)
    ] == [
        ("c_proj.weight", 1),
        ("c_proj.bias", 0),
    ]
    assert [
        (s.name.removeprefix(prefix), s.axis) for s in writer_params(gpt2, "mlp_intermediate", 0)
    ] == [("c_proj.weight", 0), ("c_fc.weight", 1), ("c_fc.bias", 0)]


def test_multimodal_gemma3_reaches_its_text_decoder(tokenizer):
    import transformers

    from polneurons.generation import greedy_generate
    from polneurons.testing import tiny_config

    config = transformers.Gemma3Config(
        text_config=tiny_config("gemma3_text").to_dict(),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(0)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    assert arch_spec(model) is ARCHITECTURES["gemma3"]
    assert (num_layers(model), site_width(model, "mlp_output")) == (2, 32)
    text_layers = model.model.language_model.layers
    assert mlp_module(model, 1) is text_layers[1].mlp
    with torch.no_grad(), NeuronSite(model, "mlp_intermediate").record([1]) as acts:
        model(input_ids=torch.tensor([[5, 6, 7]]))
    assert acts[1].shape == (1, 3, 64)
    prompt = "Immigration enriches our economy"
    input_ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model.generate(
            input_ids=input_ids, max_new_tokens=5, do_sample=False, pad_token_id=0
        )[0, input_ids.shape[1] :]
    text = tokenizer.decode(expected[expected != 1], skip_special_tokens=True).strip()
    assert greedy_generate(model, tokenizer, [prompt], max_new_tokens=5) == [text]
