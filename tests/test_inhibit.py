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


def anchor_spec(site="mlp_output", neurons=NEURONS, weight=2.0):
    return {"strategy": "anchor", "site": site, "neurons": neurons, "anchor_weight": weight}


def training_batch(tokenizer):
    examples = [tokenize_example(tokenizer, p, c, 64, True) for p, c in EXAMPLES]
    return collate(examples, 0, "cpu")  # rows of different lengths: padding is masked out


def site_values(model, site, layers, batch):
    """Every coordinate of `site` in `layers`, gradient attached, from hooks written here."""
    from polneurons.sites import NeuronSite

    values, handles = {}, []
    for layer in layers:
        module = NeuronSite(model, site).module(layer)
        if site == "mlp_output":
            hook = module.register_forward_hook(
                lambda m, a, out, layer=layer: values.update({layer: out})
            )
        else:
            hook = module.register_forward_pre_hook(
                lambda m, a, layer=layer: values.update({layer: a[0]})
            )
        handles.append(hook)
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for hook in handles:
        hook.remove()
    return values


@pytest.mark.parametrize("site", SITES)
def test_the_anchored_loss_equals_a_brute_force_sum_in_value_and_gradient(tokenizer, site):
    from polneurons.finetune import accumulate_gradients
    from polneurons.testing import tiny_lora

    model = tiny_lora("llama").train()
    batch = training_batch(tokenizer)
    mask = batch["attention_mask"].bool()
    inhibition = Inhibition(model, anchor_spec(site))
    inhibition.calibrate([batch])
    # brute force: every coordinate of both models, the base RMS over the non-padding tokens
    with torch.no_grad(), model.disable_adapter():
        base = site_values(model, site, NEURONS, batch)
    tuned = site_values(model, site, NEURONS, batch)
    expected = 0
    for layer, index in NEURONS.items():
        b, t = base[layer][..., index][mask], tuned[layer][..., index][mask]
        rms = b.pow(2).mean(0).sqrt()
        assert torch.allclose(inhibition.base_rms[layer], rms, rtol=1e-5)
        expected = expected + ((t - b) / rms).pow(2).sum()
    n_neurons = sum(len(index) for index in NEURONS.values())
    mean = expected / (n_neurons * int(mask.sum()))
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    completion = completion_loss_sum(model, batch) / n_tokens
    brute = completion + 2.0 * mean
    trainable = [p for p in model.parameters() if p.requires_grad]
    brute_grads = torch.autograd.grad(brute, trainable)
    model.zero_grad(set_to_none=True)
    loss, _, anchor = accumulate_gradients(model, [batch], inhibition)
    assert mean.item() > 0 and anchor == pytest.approx(mean.item(), rel=1e-4)
    assert loss == pytest.approx(completion.item(), rel=1e-5)
    for param, grad in zip(trainable, brute_grads, strict=True):
        torch.testing.assert_close(param.grad, grad, rtol=1e-3, atol=1e-4 * grad.abs().max())


def moved_shares(model, tokenizer, neurons):
    """Mean |h_Ms - h_M0| over the base RMS, over all tokens of the training texts: for the
    neurons in `neurons` and for every other coordinate of mlp_output, each over layers 0-1."""
    from polneurons.sites import NeuronSite

    batch = training_batch(tokenizer)
    mask = batch["attention_mask"].bool()
    site = NeuronSite(model, "mlp_output")
    with torch.no_grad():
        tuned = site_values(model, "mlp_output", range(site.n_layers), batch)
        with model.disable_adapter():
            base = site_values(model, "mlp_output", range(site.n_layers), batch)
    inside, outside = [], []
    for layer in tuned:
        moved = (tuned[layer][mask] - base[layer][mask]).abs().mean(0)
        moved = moved / base[layer][mask].pow(2).mean(0).sqrt()
        held = torch.zeros(site.width, dtype=torch.bool)
        held[neurons.get(layer, [])] = True
        inside.append(moved[held])
        outside.append(moved[~held])
    return torch.cat(inside).mean().item(), torch.cat(outside).mean().item()


def test_anchor_holds_its_neurons_near_base_where_freeze_rows_does_not(tokenizer, tmp_path):
    # freeze_rows keeps the writers' rows fixed, but each neuron's input still trains; the anchor
    # acts on the values. Same seed, data and schedule for all three runs.
    runs = {
        name: train(tokenizer, tmp_path / name, inhibit=inhibit, epochs=4)
        for name, inhibit in (
            ("vanilla", None),
            ("freeze_rows", {"strategy": "freeze_rows", "site": "mlp_output", "neurons": NEURONS}),
            ("anchor", anchor_spec(weight=10.0)),
        )
    }
    moved = {name: moved_shares(model, tokenizer, NEURONS) for name, model in runs.items()}
    held = {name: moved[name][0] / moved["vanilla"][0] for name in moved}
    others = {name: moved[name][1] / moved["vanilla"][1] for name in moved}
    assert held["freeze_rows"] > 0.5  # the paper's treatment barely holds the neurons
    assert held["anchor"] < 0.1 and held["anchor"] < held["freeze_rows"] / 5
    assert others["anchor"] > 2 * held["anchor"]  # the rest of the model still trains


def test_the_anchor_logs_its_term_and_starts_from_zero(tokenizer, tmp_path):
    result = finetune(
        tiny_model("llama"),
        tokenizer,
        EXAMPLES,
        cfg_for("llama", "lora"),
        tmp_path / "a",
        anchor_spec(),
    )
    terms = [step["anchor"] for step in result.log["steps"]]
    assert terms[0] == 0  # lora_B starts at zero: M_s equals M0 before the first update
    assert all(term > 0 for term in terms[1:])
    assert result.log["inhibit"]["anchor_weight"] == 2.0


def test_a_random_anchor_never_anchors_a_neuron_of_f_n(tmp_path):
    from polneurons.neuron_store import inhibited_set, random_control, save_localization
    from polneurons.neurons import localize
    from polneurons.specs import control_spec, inhibit_spec

    generator = torch.Generator().manual_seed(3)
    r = {t: torch.rand(2, HIDDEN, generator=generator) for t in ("a", "b")}
    general, specific = localize(r, k=40)
    save_localization(tmp_path / "neurons", general, specific, r, {})
    ift = {"of": "general", "anchor_weight": 1.0}
    spec = inhibit_spec("rnd-anchor-n25-s0", ift, "mlp_output")
    assert spec["random"] and spec["anchor_weight"] == 1.0
    f_n = inhibited_set(tmp_path / "neurons", n=25, of="general", site="mlp_output")
    for draw in range(3):
        control_kind = f"rnd-anchor-n25-s{draw}"
        control, _ = random_control(
            tmp_path / "neurons", control_spec(control_kind, ift, "mlp_output"), seed=0
        )
        assert len(control) == len(f_n) and not (control.as_mask() & f_n.as_mask()).any()
        model = add_lora(tiny_model("llama"), resolve_config(cfg_for("llama", "lora")))
        inhibition = Inhibition(model, {**spec, "neurons": control.by_layer()})
        anchored = {(layer, int(i)) for layer, index in inhibition.neurons.items() for i in index}
        treated = set(zip(f_n.layers.tolist(), f_n.indices.tolist(), strict=True))
        assert anchored and not anchored & treated


def test_anchor_is_refused_without_lora_or_a_positive_weight(tokenizer, tmp_path):
    problem = inhibition_problem("mlp_output", "anchor", "full", [])
    assert problem and "LoRA" in problem and "\n" not in problem
    assert inhibition_problem("mlp_output", "anchor", "lora", ["q_proj", "v_proj"]) is None
    with pytest.raises(ConfigError, match="anchor"):
        train(tokenizer, tmp_path / "full", method="full", inhibit=anchor_spec())
    model = add_lora(tiny_model("llama"), resolve_config(cfg_for("llama", "lora")))
    for weight in (0, -1.0, None):
        with pytest.raises(ConfigError, match="anchor_weight"):
            Inhibition(model, anchor_spec(weight=weight))
    assert not (tmp_path / "full").exists()
