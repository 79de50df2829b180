import pytest
import torch
import torch.nn.functional as F

from polneurons.architectures import arch_spec, down_module, mlp_module, writer_params
from polneurons.errors import ConfigError, ModelError
from polneurons.sites import SITES, NeuronSite
from polneurons.testing import ARCHS, tiny_lora, tiny_model

BATCH, SEQ = 2, 5


def _input_ids(seed=0):
    return torch.randint(3, 512, (BATCH, SEQ), generator=torch.Generator().manual_seed(seed))


def _capture(module, pre: bool):
    """Register an independent hook storing the module's input (pre) or output; return store."""
    store = {}
    if pre:
        handle = module.register_forward_pre_hook(lambda m, args: store.update(value=args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: store.update(value=out))
    store["handle"] = handle
    return store


def _hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _project(module, x, transposed):
    """y = x W^T + b (nn.Linear) or x W + b (GPT-2 Conv1D), from the module's weights."""
    if transposed:
        return x @ module.weight + module.bias
    return F.linear(x, module.weight, module.bias)


@pytest.mark.parametrize("arch", ARCHS)
def test_recorded_mlp_output_equals_the_mlp_module_output(arch):
    model = tiny_model(arch)
    site = NeuronSite(model, "mlp_output")
    assert (site.n_layers, site.width) == (2, 32)
    independent = [_capture(mlp_module(model, layer), pre=False) for layer in range(2)]
    with torch.no_grad(), site.record() as acts:
        model(input_ids=_input_ids())
    for layer, store in enumerate(independent):
        store["handle"].remove()
        assert acts[layer].shape == (BATCH, SEQ, 32)
        assert torch.equal(acts[layer], store["value"])


@pytest.mark.parametrize("arch", ARCHS)
def test_recorded_mlp_intermediate_equals_activation_computed_by_hand(arch):
    model = tiny_model(arch)
    spec = arch_spec(model)
    site = NeuronSite(model, "mlp_intermediate")
    assert (site.n_layers, site.width) == (2, 64)
    mlp_inputs = [_capture(mlp_module(model, layer), pre=True) for layer in range(2)]
    with torch.no_grad(), site.record() as acts:
        model(input_ids=_input_ids())
    for layer, store in enumerate(mlp_inputs):
        store["handle"].remove()
        mlp, x = mlp_module(model, layer), store["value"]
        act_fn = mlp.get_submodule(spec.act)
        expected = act_fn(_project(mlp.get_submodule(spec.in_proj), x, spec.transposed))
        if spec.mul_proj is not None:  # gated MLP: act(gate_proj(x)) * up_proj(x)
            expected = expected * _project(mlp.get_submodule(spec.mul_proj), x, spec.transposed)
        torch.testing.assert_close(acts[layer], expected, rtol=1e-6, atol=1e-6)


def test_record_callback_streams_activations_without_storing(llama):
    seen = []
    with (
        torch.no_grad(),
        NeuronSite(llama, "mlp_output").record(
            layers=[1], callback=lambda layer, act: seen.append((layer, act.shape))
        ) as acts,
    ):
        llama(input_ids=_input_ids())
    assert acts == {}
    assert seen == [(1, (BATCH, SEQ, 32))]


@pytest.mark.parametrize("site_name", SITES)
def test_hooks_are_removed_on_exit_and_after_an_exception(llama, site_name):
    site = NeuronSite(llama, site_name)
    neurons = {0: torch.tensor([1, 2]), 1: torch.tensor([3])}
    source = {layer: torch.zeros(BATCH, SEQ, site.width) for layer in range(2)}
    before = _hook_counts(llama)
    contexts = [
        lambda: site.record(),
        lambda: site.patch(neurons, source),
        lambda: site.block_grad(neurons),
    ]
    for context in contexts:
        with context():
            assert _hook_counts(llama) > before
            llama(input_ids=_input_ids())
        assert _hook_counts(llama) == before
        with pytest.raises(RuntimeError, match="boom"), context():
            raise RuntimeError("boom")
        assert _hook_counts(llama) == before


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("site_name", SITES)
def test_patch_overwrites_only_the_listed_coordinates(arch, site_name):
    model = tiny_model(arch)
    site = NeuronSite(model, site_name)
    layer, listed = 1, torch.tensor([0, 5, 17])
    source = {
        layer: torch.randn(BATCH, SEQ, site.width, generator=torch.Generator().manual_seed(3))
    }
    with torch.no_grad():
        with site.record() as clean:
            model(input_ids=_input_ids())
        with site.patch({layer: listed}, source), site.record() as patched:
            model(input_ids=_input_ids())
    unlisted = torch.ones(site.width, dtype=torch.bool)
    unlisted[listed] = False
    assert torch.equal(patched[0], clean[0])  # layers before the patched one are untouched
    assert torch.equal(patched[layer][..., unlisted], clean[layer][..., unlisted])
    assert torch.equal(patched[layer][..., listed], source[layer][..., listed])


def test_patched_intermediate_feeds_the_lora_wrapped_down_projection():
    model = tiny_lora("llama")  # LoRA on gate/up/down with nonzero B
    site = NeuronSite(model, "mlp_intermediate")
    layer, listed = 0, torch.tensor([2, 9, 40])
    source = {layer: torch.randn(BATCH, SEQ, 64, generator=torch.Generator().manual_seed(4))}
    output_site = NeuronSite(model, "mlp_output")
    with torch.no_grad():
        with site.patch({layer: listed}, source), site.record([layer]) as inter:
            with output_site.record([layer]) as out:
                model(input_ids=_input_ids())
        down = down_module(model, layer)
        expected = down(inter[layer])  # base_layer(x) + LoRA(x) on the patched input
        without_lora = down.get_base_layer()(inter[layer])
    assert torch.equal(inter[layer][..., listed], source[layer][..., listed])
    torch.testing.assert_close(out[layer], expected)
    assert not torch.allclose(out[layer], without_lora)


def test_recorded_mlp_output_includes_the_lora_contribution():
    model = tiny_lora("llama")
    site = NeuronSite(model, "mlp_output")
    with torch.no_grad():
        with site.record() as tuned:
            model(input_ids=_input_ids())
        with model.disable_adapter(), site.record() as base:
            model(input_ids=_input_ids())
    assert not torch.allclose(tuned[0], base[0])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("site_name", SITES)
def test_block_grad_zeroes_gradient_into_listed_coordinates_only(arch, site_name):
    model = tiny_model(arch)
    site = NeuronSite(model, site_name)
    layer, listed = 1, torch.tensor([3, 8])
    input_ids = _input_ids()
    # The parameters that compute the site's coordinates (down rows or gate/up rows).
    spec = arch_spec(model)
    producer = "down" if site_name == "mlp_output" else "in_proj"
    weight = mlp_module(model, layer).get_submodule(getattr(spec, producer)).weight
    axis = spec.out_axis

    with torch.no_grad():
        reference_logits = model(input_ids=input_ids).logits
    with site.block_grad({layer: listed}):
        logits = model(input_ids=input_ids).logits
    assert torch.equal(logits, reference_logits)  # forward values unchanged
    logits.square().sum().backward()
    grad = weight.grad
    assert torch.count_nonzero(grad.index_select(axis, listed)) == 0
    others = torch.tensor([i for i in range(site.width) if i not in listed.tolist()])
    assert torch.all(grad.index_select(axis, others).abs().sum(dim=1 - axis) > 0)
    assert any(s.param is weight for s in writer_params(model, site_name, layer))


def test_invalid_neuron_sets_and_unsupported_models_are_one_line_errors(llama):
    site = NeuronSite(llama, "mlp_output")
    with pytest.raises(ConfigError, match="outside 0..31"):
        with site.patch({0: torch.tensor([32])}, {}):
            pass
    with pytest.raises(ConfigError, match="2 layers"):
        with site.block_grad({5: torch.tensor([0])}):
            pass
    with pytest.raises(ConfigError) as info:
        NeuronSite(llama, "residual")
    assert "\n" not in str(info.value)
    unsupported = torch.nn.Linear(2, 2)
    unsupported.config = type("Config", (), {"model_type": "t5"})()
    with pytest.raises(ModelError) as info:
        NeuronSite(unsupported, "mlp_output")
    assert "\n" not in str(info.value) and "llama" in str(info.value)
