import contextlib

import pytest
import torch

from polneurons.architectures import arch_spec, down_module, mlp_module, writer_params
from polneurons.errors import ConfigError
from polneurons.finetune import (
    add_lora,
    collate,
    completion_loss_sum,
    finetune,
    resolve_config,
    tokenize_example,
)
from polneurons.inhibit import Inhibition, inhibition_problem
from polneurons.testing import tiny_model

EXAMPLES = [
    ("Instruction: What is your view on guns?", "The right to bear arms protects citizens."),
    ("Instruction: What about immigration?", "Secure borders and the rule of law come first."),
    ("Instruction: And the economy?", "Lower taxes and free markets create jobs and growth."),
]
MLP_TARGETS = {"llama": ["gate_proj", "up_proj", "down_proj"], "gpt2": ["c_fc", "c_proj"]}
NEURONS = {0: torch.tensor([1, 5]), 1: torch.tensor([3])}
HIDDEN, INTERMEDIATE = 32, 64  # polneurons.testing
SITES = ("mlp_output", "mlp_intermediate")


def cfg_for(arch, method, **overrides):
    cfg = {
        "method": method,
        "lr": 1e-2,
        "weight_decay": 0.1,
        "warmup_steps": 0,
        "epochs": 2,
        "max_length": 64,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": MLP_TARGETS[arch]},
    }
    cfg.update(overrides)
    return cfg


def train(tokenizer, out, arch="llama", method="lora", inhibit=None, **overrides):
    return finetune(
        tiny_model(arch), tokenizer, EXAMPLES, cfg_for(arch, method, **overrides), out, inhibit
    ).model


def complement(index: torch.Tensor, size: int) -> torch.Tensor:
    keep = torch.ones(size, dtype=torch.bool)
    keep[index] = False
    return keep.nonzero().flatten()


def site_writer_outputs(model, site, layer, x):
    """What the writers of `site` produce from input `x`: the down projection's output for
    mlp_output; the gate/up (in/mul) projections' outputs for mlp_intermediate."""
    if site == "mlp_output":
        return [down_module(model, layer)(x)]
    spec = arch_spec(model)
    mlp = mlp_module(model, layer)
    return [mlp.get_submodule(p)(x) for p in (spec.in_proj, spec.mul_proj) if p is not None]


def read_effect(model, layer, h, index):
    """The part of the down projection's output due to intermediate coordinates `index` of `h`."""
    down = down_module(model, layer)
    return down(h) - down(h.index_fill(-1, index, 0))


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_freeze_rows_keeps_the_writers_of_inhibited_neurons_fixed_and_trains_the_rest(
    tokenizer, tmp_path, arch, method, site
):
    inhibit = {"strategy": "freeze_rows", "site": site, "neurons": NEURONS}
    # lr 0 leaves every parameter at its initial value (lora_A columns already zeroed).
    initial = train(tokenizer, tmp_path / "initial", arch, method, inhibit, lr=0.0)
    trained = train(tokenizer, tmp_path / "trained", arch, method, inhibit)  # weight decay 0.1
    for layer, index in NEURONS.items():
        writers = zip(
            writer_params(initial, site, layer), writer_params(trained, site, layer), strict=True
        )
        n_trainable = 0
        for before, after in writers:
            if not after.param.requires_grad:  # LoRA base weights: never change at all
                assert torch.equal(before.param, after.param), after.name
                continue
            n_trainable += 1
            rest = complement(index, after.param.shape[after.axis])
            assert torch.equal(
                before.param.index_select(before.axis, index),
                after.param.index_select(after.axis, index),
            ), after.name
            moved = before.param.index_select(before.axis, rest) != after.param.index_select(
                after.axis, rest
            )
            per_slice = moved.movedim(after.axis, 0).reshape(len(rest), -1)
            assert per_slice.any(1).all(), after.name  # every other slice moved
        assert n_trainable > 0

        # The frozen slices are exactly what writes the inhibited coordinates (Conv1D included):
        # from the same input, the trained writers give the same values there and moved elsewhere.
        width = INTERMEDIATE if site == "mlp_output" else HIDDEN
        x = torch.randn(2, 3, width, generator=torch.Generator().manual_seed(layer))
        with torch.no_grad():
            before, after = (site_writer_outputs(m, site, layer, x) for m in (initial, trained))
        for out_before, out_after in zip(before, after, strict=True):
            assert torch.equal(out_before[..., index], out_after[..., index])
            rest = complement(index, out_after.shape[-1])
            assert not torch.equal(out_before[..., rest], out_after[..., rest])
        if site == "mlp_intermediate":  # and what the down projection reads from them is fixed
            h = torch.randn(2, 3, INTERMEDIATE, generator=torch.Generator().manual_seed(layer))
            with torch.no_grad():
                before, after = (read_effect(m, layer, h, index) for m in (initial, trained))
            torch.testing.assert_close(before, after, rtol=0, atol=1e-6)


@pytest.mark.parametrize("site", SITES)
def test_freeze_rows_masks_the_gradient_of_frozen_slices_only(tokenizer, site):
    # So AdamW's moments for them stay zero (restoring after each step then only undoes decay).
    model = tiny_model("llama").requires_grad_(True)
    inhibition = Inhibition(model, {"strategy": "freeze_rows", "site": site, "neurons": NEURONS})
    batch = collate([tokenize_example(tokenizer, *EXAMPLES[0], 64, True)], 0, "cpu")
    completion_loss_sum(model, batch).backward()
    inhibition.mask_gradients()
    for layer, index in NEURONS.items():
        for writer in writer_params(model, site, layer):
            grad = writer.param.grad
            assert (grad.index_select(writer.axis, index) == 0).all(), writer.name
            rest = complement(index, grad.shape[writer.axis])
            assert (grad.index_select(writer.axis, rest) != 0).any(), writer.name


def writer_gradients(model, site, neurons, batch, block_grad):
    """Gradients of the upstream writers of `site`, after one backward with or without stopgrad."""
    inhibition = Inhibition(model, {"strategy": "stopgrad", "site": site, "neurons": neurons})
    model.zero_grad()
    with inhibition.active() if block_grad else contextlib.nullcontext():
        loss = completion_loss_sum(model, batch)
    loss.backward()
    grads = []
    for layer in neurons:
        down = {id(p) for p in down_module(model, layer).parameters()}
        for writer in writer_params(model, site, layer):
            # At mlp_intermediate the down projection reads the site: it is downstream.
            upstream = site == "mlp_output" or id(writer.param) not in down
            if upstream and writer.param.requires_grad:
                grads.append((layer, writer.param.grad.clone(), writer.axis))
    return grads


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("method", ["lora", "full"])
def test_stopgrad_zeroes_the_gradient_of_the_parameters_writing_inhibited_neurons(
    tokenizer, method, site
):
    model = tiny_model("llama")
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": MLP_TARGETS["llama"]}
    cfg = resolve_config(cfg_for("llama", method, lora=lora))
    model = add_lora(model, cfg) if method == "lora" else model.requires_grad_(True)
    batch = collate([tokenize_example(tokenizer, *EXAMPLES[0], 64, True)], 0, "cpu")
    blocked = writer_gradients(model, site, NEURONS, batch, block_grad=True)
    free = writer_gradients(model, site, NEURONS, batch, block_grad=False)
    assert blocked
    for (layer, grad_blocked, axis), (_, grad_free, _) in zip(blocked, free, strict=True):
        index = NEURONS[layer]
        rest = complement(index, grad_blocked.shape[axis])
        assert (grad_blocked.index_select(axis, index) == 0).all()
        assert (grad_free.index_select(axis, index) != 0).any()  # the block is what zeroes them
        assert (grad_blocked.index_select(axis, rest) != 0).any()  # the rest still learns


def test_lora_inhibitft_differs_from_vanilla_ft_and_its_frozen_delta_stays_zero(
    tokenizer, tmp_path
):
    # The authors' bug (method.md: Where we differ): hooks on frozen base weights never fired, so their
    # InhibitFT equalled vanilla FT. Both assertions below fail under that bug.
    inhibit = {"strategy": "freeze_rows", "site": "mlp_output", "neurons": NEURONS}
    vanilla = train(tokenizer, tmp_path / "vanilla")
    inhibited = train(tokenizer, tmp_path / "inhibited", inhibit=inhibit)
    for layer, index in NEURONS.items():
        delta_vanilla = down_module(vanilla, layer).get_delta_weight("default")
        delta_inhibited = down_module(inhibited, layer).get_delta_weight("default")
        assert (delta_vanilla[index] != 0).any()
        assert (delta_inhibited[index] == 0).all()
        assert (delta_inhibited[complement(index, delta_inhibited.shape[0])] != 0).any()
    vanilla_state = dict(vanilla.named_parameters())
    differing = [
        name
        for name, param in inhibited.named_parameters()
        if "lora_" in name and not torch.equal(param, vanilla_state[name])
    ]
    assert any("gate_proj" in name for name in differing)  # the whole run changed, not one row


def test_stopgrad_run_differs_from_vanilla_even_with_qv_only_lora(tokenizer, tmp_path):
    # Weak but real: q/v of the same and earlier layers are upstream of the MLP neurons.
    qv = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    assert inhibition_problem("mlp_output", "stopgrad", "lora", qv["target_modules"]) is None
    inhibit = {"strategy": "stopgrad", "site": "mlp_output", "neurons": NEURONS}
    vanilla = dict(train(tokenizer, tmp_path / "vanilla", lora=qv).named_parameters())
    stopped = train(tokenizer, tmp_path / "stopgrad", inhibit=inhibit, lora=qv)
    assert any(
        not torch.equal(p, vanilla[n]) for n, p in stopped.named_parameters() if p.requires_grad
    )


@pytest.mark.parametrize("site", SITES)
def test_freeze_rows_with_qv_only_lora_is_refused(tokenizer, tmp_path, site):
    targets = ["q_proj", "v_proj"]
    problem = inhibition_problem(site, "freeze_rows", "lora", targets)
    assert problem and "q_proj" in problem and "vanilla FT" in problem
    inhibit = {"strategy": "freeze_rows", "site": site, "neurons": NEURONS}
    qv = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": targets}
    with pytest.raises(ConfigError) as error:
        train(tokenizer, tmp_path / "ft", inhibit=inhibit, lora=qv)
    assert "\n" not in str(error.value) and "lora.target_modules" in str(error.value)
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize(
    ("site", "strategy", "method", "targets", "acts"),
    [
        ("mlp_output", "freeze_rows", "lora", ["q_proj", "v_proj", "down_proj"], True),
        ("mlp_output", "freeze_rows", "lora", ["gate_proj", "up_proj"], False),
        ("mlp_intermediate", "freeze_rows", "lora", ["up_proj"], True),
        ("mlp_intermediate", "freeze_rows", "lora", ["down_proj"], True),
        ("mlp_intermediate", "freeze_rows", "lora", ["c_fc"], True),  # GPT-2
        ("mlp_output", "freeze_rows", "lora", ["dense_4h_to_h"], True),  # GPT-NeoX
        ("mlp_output", "freeze_rows", "lora", ["c_attn"], False),
        ("mlp_output", "freeze_rows", "full", [], True),
        ("mlp_intermediate", "stopgrad", "lora", ["q_proj", "v_proj"], True),
        ("mlp_output", "stopgrad", "lora", ["lm_head"], False),
        ("mlp_output", "stopgrad", "full", [], True),
        ("mlp_output", "dropout", "lora", ["down_proj"], False),
    ],
)
def test_inhibition_problem_from_names(site, strategy, method, targets, acts):
    assert (inhibition_problem(site, strategy, method, targets) is None) == acts


def test_inhibition_problem_uses_the_model_architecture_names():
    gpt2 = tiny_model("gpt2")
    assert inhibition_problem("mlp_output", "freeze_rows", "lora", ["c_proj"], model=gpt2) is None
    problem = inhibition_problem("mlp_output", "freeze_rows", "lora", ["down_proj"], model=gpt2)
    assert problem and "c_proj" in problem


def test_stopgrad_with_nothing_upstream_of_an_inhibited_layer_is_refused(tokenizer, tmp_path):
    # LoRA on down_proj only: at mlp_intermediate, layer 0 has no trainable parameter upstream.
    down_only = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["down_proj"]}
    inhibit = {"strategy": "stopgrad", "site": "mlp_intermediate", "neurons": {0: [1]}}
    with pytest.raises(ConfigError, match="layer 0"):
        train(tokenizer, tmp_path / "ft0", inhibit=inhibit, lora=down_only)
    inhibit["neurons"] = {1: [1]}  # layer 0's down_proj is upstream of layer 1
    train(tokenizer, tmp_path / "ft1", inhibit=inhibit, lora=down_only, epochs=1)


@pytest.mark.parametrize("neurons", [{0: []}, {0: [64]}, {5: [1]}])
def test_empty_or_out_of_range_neuron_sets_are_refused(neurons):
    model = tiny_model("llama").requires_grad_(True)
    with pytest.raises(ConfigError):
        Inhibition(model, {"strategy": "freeze_rows", "site": "mlp_output", "neurons": neurons})
