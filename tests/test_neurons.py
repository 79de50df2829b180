import pytest
import torch
from peft import LoraConfig, get_peft_model

from polneurons.activations import dump_activations, topic_contrast
from polneurons.errors import ConfigError, IntegrityError
from polneurons.neurons import (
    NeuronSet,
    bootstrap_stability,
    control_report,
    draw_seed,
    jaccard,
    layer_histogram,
    layer_quotas,
    localize,
    random_like,
    summary,
    top_count,
    top_fraction,
    top_k_percent,
)
from polneurons.testing import randomize_lora


def neuron_set(coords, scores=None, n_layers=3, width=4, site="mlp_output"):
    layers = [layer for layer, _ in coords]
    indices = [index for _, index in coords]
    scores = scores if scores is not None else [0.0] * len(coords)
    return NeuronSet(
        torch.tensor(layers, dtype=torch.long),
        torch.tensor(indices, dtype=torch.long),
        torch.tensor(scores),
        site,
        n_layers,
        width,
    )


def coords(s: NeuronSet) -> set[tuple[int, int]]:
    return set(zip(s.layers.tolist(), s.indices.tolist(), strict=True))


# Two topics on a 2 x 3 site (6 neurons); k = 50 -> 3 neurons per topic.
R_A = torch.tensor([[9.0, 8.0, 1.0], [7.0, 2.0, 3.0]])  # top: (0,0) (0,1) (1,0)
R_B = torch.tensor([[6.0, 1.0, 2.0], [5.0, 4.0, 0.0]])  # top: (0,0) (1,0) (1,1)


def test_top_k_percent_pools_all_layers_and_breaks_ties_by_layer_then_index():
    assert coords(NeuronSet.from_mask(top_k_percent(R_A, 50), R_A, "s")) == {(0, 0), (0, 1), (1, 0)}
    tied = torch.ones(2, 3)
    assert top_k_percent(tied, 50).tolist() == [[True, True, True], [False, False, False]]


def test_top_k_percent_boundaries():
    r = torch.rand(3, 7, generator=torch.Generator().manual_seed(0))
    assert top_k_percent(r, 100).all()
    tiny = top_k_percent(r, 1e-6)  # rounds down to zero: at least one neuron, the largest
    assert tiny.sum() == 1 and r[tiny].item() == r.max().item()
    assert top_k_percent(r, 50).sum() == 10  # floor(21 * 0.5)
    for bad in (0, -1, 101):
        with pytest.raises(ConfigError):
            top_k_percent(r, bad)


def test_top_k_percent_batched_equals_one_by_one():
    r = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(1))
    batched = top_k_percent(r, 30)
    assert all(torch.equal(batched[b], top_k_percent(r[b], 30)) for b in range(4))


def test_localize_general_is_intersection_scored_by_mean_and_specific_is_difference():
    general, specific = localize({"a": R_A, "b": R_B}, k=50)
    assert coords(general) == {(0, 0), (1, 0)}
    scores = {(int(layer), int(i)): float(s) for layer, i, s in general.to_frame().values}
    assert scores == {(0, 0): 7.5, (1, 0): 6.0}
    assert coords(specific["a"]) == {(0, 1)} and specific["a"].scores.tolist() == [8.0]
    assert coords(specific["b"]) == {(1, 1)} and specific["b"].scores.tolist() == [4.0]
    assert general.site == "mlp_output" and (general.n_layers, general.width) == (2, 3)


def test_localize_k100_makes_every_neuron_general_and_no_specific():
    general, specific = localize({"a": R_A, "b": R_B}, k=100)
    assert len(general) == 6 and all(len(s) == 0 for s in specific.values())


def test_neuron_set_is_canonical_and_refuses_duplicates_and_out_of_range():
    s = neuron_set([(2, 1), (0, 3), (0, 1)], [1.0, 2.0, 3.0])
    assert s.layers.tolist() == [0, 0, 2] and s.indices.tolist() == [1, 3, 1]
    assert s.scores.tolist() == [3.0, 2.0, 1.0]
    assert {k: v.tolist() for k, v in s.by_layer().items()} == {0: [1, 3], 2: [1]}
    assert s.per_layer_counts().tolist() == [2, 0, 1]
    assert s.as_mask().nonzero().tolist() == [[0, 1], [0, 3], [2, 1]]
    assert layer_histogram(s)["count"].tolist() == [2, 0, 1]
    with pytest.raises(ValueError):
        neuron_set([(0, 1), (0, 1)])
    with pytest.raises(ValueError):
        neuron_set([(3, 0)])
    with pytest.raises(ValueError):
        neuron_set([(0, 4)])


def test_jaccard_on_hand_sets():
    a = neuron_set([(0, 0), (0, 1), (1, 2)])
    b = neuron_set([(0, 1), (1, 2), (2, 3), (2, 0)])
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, neuron_set([(2, 2)])) == 0.0
    assert jaccard(neuron_set([]), neuron_set([])) == 1.0
    with pytest.raises(ValueError):
        jaccard(a, neuron_set([(0, 0)], width=5))


def test_random_like_keeps_per_layer_counts_and_is_seeded():
    base = neuron_set([(0, 0), (0, 1), (2, 5), (2, 6), (2, 7)], n_layers=3, width=10)
    first, again = random_like(base, seed=3), random_like(base, seed=3)
    assert torch.equal(first.per_layer_counts(), base.per_layer_counts())
    assert coords(first) == coords(again)
    draws = {frozenset(coords(random_like(base, seed=s))) for s in range(10)}
    assert len(draws) > 1


def random_treated(n_layers, width, fill, seed):
    """A treated set whose layer i holds fill[i] random neurons (some layers full)."""
    generator = torch.Generator().manual_seed(seed)
    cells = [
        (layer, int(i))
        for layer, count in enumerate(fill)
        for i in torch.randperm(width, generator=generator)[:count]
    ]
    return neuron_set(cells, n_layers=n_layers, width=width)


@pytest.mark.parametrize(
    "n_layers, width, fill",
    [
        (3, 10, [2, 0, 3]),  # every layer has room
        (4, 6, [1, 0, 6, 4]),  # layer 2 is full, layer 3 nearly: their neurons spill
        (5, 8, [0, 8, 1, 7, 2]),  # a full layer between two with room
        (3, 5, [5, 1, 0]),
    ],
)
def test_random_control_never_intersects_its_treated_set_and_reports_the_shortfall(
    n_layers, width, fill
):
    for seed in range(6):
        treated = random_treated(n_layers, width, fill, seed)
        drawn = random_like(treated, seed=seed, exclude=treated)
        report = control_report(treated, drawn)
        assert not coords(drawn) & coords(treated)
        assert report["overlap"] == 0
        assert len(drawn) == len(treated) == report["size"]
        # each layer keeps its own count as far as its free neurons allow; the rest is unmatched
        own = [min(c, width - c) for c in fill]
        assert report["unmatched_per_layer"] == [c - o for c, o in zip(fill, own, strict=True)]
        assert report["unmatched_total"] == sum(report["spilled_in_per_layer"])
        got = drawn.per_layer_counts().tolist()
        assert all(g >= o for g, o in zip(got, own, strict=True))


def test_unmatched_neurons_spill_to_the_nearest_layer_with_room_lower_first_on_a_tie():
    # layer 2 wants 4 but has 1 free: 3 spill; layers 1 and 3 are equally near (lower first)
    quota, unmatched = layer_quotas([0, 0, 4, 0, 0], free=[5, 1, 1, 1, 5])
    assert unmatched == [0, 0, 3, 0, 0]
    assert quota == [1, 1, 1, 1, 0]  # layer 1 (1 free), then layer 3, then layer 0 before 4
    assert layer_quotas([2, 0, 0], free=[0, 3, 3]) == ([0, 2, 0], [2, 0, 0])
    assert layer_quotas([1, 1], free=[3, 3]) == ([1, 1], [0, 0])


def test_a_random_control_larger_than_everything_outside_the_treated_set_is_refused():
    full = neuron_set([(layer, i) for layer in range(3) for i in range(9)], n_layers=3, width=10)
    with pytest.raises(ConfigError, match="outside the treated set"):
        random_like(full, seed=0, exclude=full)


def test_draw_seeds_differ_per_draw_and_per_config_seed():
    seeds = {draw_seed(seed, draw) for seed in range(4) for draw in range(4)}
    assert len(seeds) == 16
    assert draw_seed(0, 1) == draw_seed(0, 1)
    treated = neuron_set([(0, 0), (1, 1)], n_layers=2, width=50)
    draws = {frozenset(coords(random_like(treated, draw_seed(0, k), treated))) for k in range(3)}
    assert len(draws) == 3


def test_top_fraction_picks_the_highest_scores():
    general = neuron_set(
        [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3), (1, 3), (0, 3)],
        [0.5, 9.0, 3.0, 7.0, 1.0, 8.0, 2.0, 4.0, 6.0, 5.0],
    )
    top = top_fraction(general, 30)
    assert sorted(top.scores.tolist(), reverse=True) == [9.0, 8.0, 7.0]
    assert coords(top) == {(0, 1), (2, 1), (1, 1)}
    of_all = top_fraction(general, 50, of="all")  # 50% of 3 x 4 = 6 neurons
    assert sorted(of_all.scores.tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(top_fraction(general, 10, of="all", total_neurons=40)) == 4
    with pytest.raises(ConfigError):
        top_fraction(general, 100, of="all")  # 12 neurons asked, G holds 10


def test_the_null_control_inhibits_as_many_neurons_as_f_n_the_top_of_g_null(tmp_path):
    from polneurons.neuron_store import inhibited_set

    general = neuron_set([(0, 0), (0, 1), (1, 0), (1, 1)], [4.0, 3.0, 2.0, 1.0])
    g_null = neuron_set([(2, 0), (2, 1), (2, 2), (1, 3), (0, 3), (0, 2)], [1, 9, 2, 8, 3, 7])
    for folder, neurons in (("ft", general), ("null", g_null)):
        (tmp_path / folder).mkdir()
        neurons.save(tmp_path / folder / "general.pt")
    site = general.site
    f_n = inhibited_set(tmp_path / "ft", n=50, of="general", site=site)  # 2 of G's 4
    assert coords(f_n) == {(0, 0), (0, 1)}
    null = inhibited_set(tmp_path / "ft", n=50, of="general", site=site, from_dir=tmp_path / "null")
    assert coords(null) == {(2, 1), (1, 3)}  # as many as F_n (not 50% of G_null's 6), its top
    same = inhibited_set(tmp_path / "ft", n=50, of="general", site=site, from_dir=tmp_path / "ft")
    assert coords(same) == coords(f_n)
    with pytest.raises(ConfigError, match="holds only"):
        top_count(g_null, 7)


def test_save_load_round_trip(tmp_path):
    s = neuron_set([(0, 1), (2, 3)], [0.25, 1.5], site="mlp_intermediate")
    s.save(tmp_path / "g.pt")
    back = NeuronSet.load(tmp_path / "g.pt")
    assert coords(back) == coords(s) and torch.equal(back.scores, s.scores)
    assert (back.site, back.n_layers, back.width) == ("mlp_intermediate", 3, 4)


def test_load_refuses_a_corrupted_file_or_a_missing_checksum(tmp_path):
    path = tmp_path / "g.pt"
    neuron_set([(0, 1), (2, 3)]).save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        NeuronSet.load(path)
    neuron_set([(0, 1)]).save(path)
    (tmp_path / "g.pt.sha256").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        NeuronSet.load(path)


def test_summary_reports_sizes_and_per_layer_counts():
    general, specific = localize({"a": R_A, "b": R_B}, k=50)
    report = summary(general, specific)
    assert report["general"] == {"size": 2, "per_layer": [1, 1]}
    assert report["specific"]["a"] == {"size": 1, "per_layer": [1, 0]}
    assert report["total_neurons"] == 6


@pytest.fixture
def topic_dumps(llama, tokenizer, tmp_path):
    """Dumps of a LoRA'd tiny llama for two topics: varied prompts, and one prompt repeated."""
    from polneurons.testing import FIXTURE_TEXT

    model = get_peft_model(llama, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    randomize_lora(model, scale=1.0, seed=0)
    prompts = {"varied": FIXTURE_TEXT[:6], "repeated": [FIXTURE_TEXT[0]] * 6}
    for topic, texts in prompts.items():
        ids = [f"{topic}{i}" for i in range(len(texts))]
        dump_activations(model.eval(), tokenizer, texts, ids, tmp_path / topic, shard_size=4)
    return {topic: tmp_path / topic for topic in prompts}


def test_bootstrap_of_identical_prompts_always_recovers_g(topic_dumps):
    stable = bootstrap_stability({"t": topic_dumps["repeated"]}, k=30, n_boot=5, seed=0)
    general, _ = localize({"t": topic_contrast(topic_dumps["repeated"])}, k=30)
    assert stable["general_size"] == len(general) == 19  # floor(30% of 2 x 32)
    assert stable["recovered_share_mean"] == pytest.approx(1.0)
    assert stable["jaccard_ci95"] == pytest.approx([1.0, 1.0])
    assert stable["size_min"] == stable["size_max"] == 19


def test_bootstrap_is_seeded_and_reports_shares_of_the_full_data_g(topic_dumps):
    first = bootstrap_stability(topic_dumps, k=30, n_boot=8, seed=1)
    assert first == bootstrap_stability(topic_dumps, k=30, n_boot=8, seed=1)
    general, _ = localize({t: topic_contrast(d) for t, d in topic_dumps.items()}, k=30)
    assert first["general_size"] == len(general) > 0
    low, high = first["recovered_share_ci95"]
    assert 0 <= low <= first["recovered_share_mean"] <= high <= 1
    assert first["size_min"] <= first["size_mean"] <= first["size_max"] <= 19
    assert first["topics"] == ["repeated", "varied"] and first["n_boot"] == 8


def test_per_layer_ranking_takes_k_percent_of_each_layer_by_brute_force():
    r = torch.rand(4, 10, generator=torch.Generator().manual_seed(2)) * torch.tensor(
        [[0.1], [1.0], [10.0], [100.0]]
    )  # the layer scale grows with depth, as in a real model
    mask = top_k_percent(r, 30, within="layer")
    for layer in range(4):
        expected = set(torch.argsort(r[layer], descending=True)[:3].tolist())
        assert set(mask[layer].nonzero().flatten().tolist()) == expected
    pooled = top_k_percent(r, 30)
    assert pooled[:2].sum() == 0 and pooled[3].sum() >= 8  # pooled: the deep layers take it all
    with pytest.raises(ConfigError, match="rank_within"):
        top_k_percent(r, 30, within="column")


def test_localize_ranks_within_each_layer_when_asked():
    general, specific = localize({"a": R_A, "b": R_B}, k=67, rank_within="layer")
    # two neurons per layer (floor(3 * 0.67) = 2): a takes (0,0) (0,1) (1,0) (1,2),
    # b takes (0,0) (0,2) (1,0) (1,1)
    assert coords(general) == {(0, 0), (1, 0)}
    assert coords(specific["a"]) == {(0, 1), (1, 2)} and coords(specific["b"]) == {(0, 2), (1, 1)}


def test_bootstrap_follows_the_contrast_and_ranking_of_the_run(topic_dumps):
    stable = bootstrap_stability(
        topic_dumps, k=30, n_boot=4, seed=0, contrast="relative", rank_within="layer"
    )
    r = {t: topic_contrast(d, "relative") for t, d in topic_dumps.items()}
    general, _ = localize(r, k=30, rank_within="layer")
    assert stable["general_size"] == len(general)
    assert len(general) <= 2 * 9  # floor(30% of 32) per layer, 2 layers


def test_the_all_and_complement_patch_sets_cover_the_site_and_complement_plus_g_is_all(tmp_path):
    from polneurons.neuron_store import patch_set, save_localization

    general, specific = localize({"a": R_A, "b": R_B}, k=50)
    save_localization(tmp_path / "neurons", general, specific, {"a": R_A, "b": R_B}, {})
    every = patch_set(tmp_path / "neurons", "all", None, site="mlp_output")
    rest = patch_set(tmp_path / "neurons", "complement", None, site="mlp_output")
    assert len(every) == 6 and every.as_mask().all()
    assert not (rest.as_mask() & general.as_mask()).any()
    assert torch.equal(rest.as_mask() | general.as_mask(), every.as_mask())
    with pytest.raises(ConfigError, match="unknown patching condition"):
        patch_set(tmp_path / "neurons", "everything", None, site="mlp_output")


def test_a_dose_is_the_top_share_of_g_and_its_random_control_avoids_all_of_g(tmp_path):
    from polneurons.neuron_store import patch_set, random_control, save_localization
    from polneurons.specs import control_spec

    generator = torch.Generator().manual_seed(0)
    r = {t: torch.rand(4, 16, generator=generator) for t in ("a", "b")}
    general, specific = localize(r, k=40)
    save_localization(tmp_path / "neurons", general, specific, r, {})
    dose = patch_set(tmp_path / "neurons", "dose50", None, site="mlp_output")
    pairs = list(zip(general.layers.tolist(), general.indices.tolist(), strict=True))
    by_score = sorted(zip(general.scores.tolist(), pairs, strict=True), reverse=True)
    assert len(dose) == len(general) // 2
    dosed = set(zip(dose.layers.tolist(), dose.indices.tolist(), strict=True))
    assert dosed == {pair for _, pair in by_score[: len(dose)]}
    spec = control_spec("patch-dose50-random-s0", {"of": "all"}, "mlp_output")
    assert spec["of"] == "general" and spec["exclude"] == "general"  # not InhibitFT's `of`
    control, report = random_control(tmp_path / "neurons", spec, seed=0)
    assert len(control) == len(dose)
    assert not (control.as_mask() & general.as_mask()).any()  # outside G, not only the dose
    assert report["overlap"] == 0


def _localized_folder(folder, seed: int):
    """A neurons folder localized on random contrasts of topics a and b; (folder, G)."""
    from polneurons.neuron_store import save_localization

    generator = torch.Generator().manual_seed(seed)
    r = {t: torch.rand(4, 16, generator=generator) for t in ("a", "b")}
    general, specific = localize(r, k=30)
    save_localization(folder, general, specific, r, {})
    return folder, general


def test_s_t_random_control_matches_its_layers_and_avoids_all_of_n_t(tmp_path):
    from polneurons.neuron_store import load_specific, specific_random

    folder, general = _localized_folder(tmp_path / "neurons", seed=1)
    for topic in ("a", "b"):
        s_t = load_specific(folder, topic, "mlp_output")
        control = specific_random(folder, topic, site="mlp_output", seed=0, draw=0)
        assert len(s_t) > 0 and len(control) == len(s_t)
        assert torch.equal(control.per_layer_counts(), s_t.per_layer_counts())
        n_t = general.as_mask() | s_t.as_mask()
        assert not (control.as_mask() & n_t).any()
        again = specific_random(folder, topic, site="mlp_output", seed=0, draw=0)
        assert torch.equal(again.as_mask(), control.as_mask())  # seeded
        other = specific_random(folder, topic, site="mlp_output", seed=0, draw=1)
        assert not torch.equal(other.as_mask(), control.as_mask())  # another draw


def test_the_judges_s_t_control_is_the_draw_the_readout_scores(tmp_path):
    from polneurons.neuron_store import patch_set, specific_random

    folder, _ = _localized_folder(tmp_path / "neurons", seed=2)
    for topic, draw in (("a", 0), ("b", 1)):
        judged = patch_set(folder, f"specific-random-s{draw}", topic, site="mlp_output", seed=3)
        read_out = specific_random(folder, topic, site="mlp_output", seed=3, draw=draw)
        assert torch.equal(judged.as_mask(), read_out.as_mask())
    with pytest.raises(ConfigError):  # without the seed there is no draw to make
        patch_set(folder, "specific-random-s0", "a", site="mlp_output")
