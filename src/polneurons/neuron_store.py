"""The on-disk layout of one fine-tuned run's neuron sets, and the sets later stages draw from it.

    neurons/general.pt          G, scored by the mean r_t over topics (method.md: PNLAC)
    neurons/specific/<t>.pt     S_t = N_t minus G, scored by r_t
    neurons/contrast.pt         r_t of every topic (n_topics x n_layers x width)
    neurons/summary.json        sizes, neurons per layer, k, site, topics, stability of G
Each .pt has a sha256 sidecar checked on load.
"""

from __future__ import annotations

from pathlib import Path

import torch

from polneurons.errors import ConfigError, IntegrityError
from polneurons.io import atomic_path, read_json, save_torch, write_json, write_text
from polneurons.kinds import condition_kind, parse_kind
from polneurons.neurons import (
    NeuronSet,
    control_report,
    draw_seed,
    random_like,
    summary,
    top_count,
    top_fraction,
)


def save_localization(out_dir, general, specific, r_by_topic, info: dict) -> None:
    """Write the whole neurons folder atomically."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        general.save(tmp / "general.pt")
        (tmp / "specific").mkdir()
        for topic, neuron_set in specific.items():
            neuron_set.save(tmp / "specific" / f"{topic}.pt")
        topics = list(r_by_topic)
        digest = save_torch(
            {"topics": topics, "r": torch.stack([r_by_topic[t] for t in topics])},
            tmp / "contrast.pt",
        )
        write_text(tmp / "contrast.pt.sha256", f"{digest}  contrast.pt\n")
        write_json(tmp / "summary.json", {**info, **summary(general, specific)})


def _load(path: Path, site: str | None) -> NeuronSet:
    if not path.exists():
        raise IntegrityError(
            f"{path} is missing", "delete the neurons folder and rerun localize_neurons"
        )
    neuron_set = NeuronSet.load(path)
    if site is not None and neuron_set.site != site:
        raise ConfigError(
            f"{path} holds neurons at site {neuron_set.site}, the config asks {site}",
            "delete the neurons folder so localize_neurons reruns at the new site",
        )
    return neuron_set


def load_general(neurons_dir, site: str | None = None) -> NeuronSet:
    return _load(Path(neurons_dir) / "general.pt", site)


def load_specific(neurons_dir, topic: str, site: str | None = None) -> NeuronSet:
    return _load(Path(neurons_dir) / "specific" / f"{topic}.pt", site)


def load_summary(neurons_dir) -> dict:
    return read_json(Path(neurons_dir) / "summary.json")


def inhibited_set(neurons_dir, *, n: float, of: str, site: str, from_dir=None) -> NeuronSet:
    """F_n: the top n% of G (method.md: InhibitFT).

    G is read from `neurons_dir`, the vanilla run's folder. With `from_dir`, the null fine-tune's
    folder, the null control's set instead: as many neurons as F_n, the top of G_null by score."""
    f_n = top_fraction(load_general(neurons_dir, site), n, of=of)
    if from_dir is None or Path(from_dir) == Path(neurons_dir):
        return f_n
    return top_count(load_general(from_dir, site), len(f_n))


def patch_set(
    neurons_dir, condition: str, topic: str | None, *, site: str, seed: int | None = None
) -> NeuronSet:
    """The neurons a patching condition overwrites (method.md: Activation patching): G,
    S_t, every coordinate of the site (`all`, the ceiling of patching at this site), every
    coordinate but G (`complement`) or the top x% of G by score (`dose<x>`, the same formula
    as F_n), or draw k of S_t's size-matched control (`specific-random-s<k>`, drawn here with
    `seed`: `specific_random`); the other random draws come from `random_control`."""
    if condition.startswith("dose"):
        dose = parse_kind(f"patch-{condition}")
        return inhibited_set(neurons_dir, n=dose.n, of="general", site=site)
    if condition.startswith("specific-random-s") and seed is not None:
        draw = parse_kind(f"patch-{condition}").draw
        return specific_random(neurons_dir, topic, site=site, seed=seed, draw=draw)
    if condition == "general":
        return load_general(neurons_dir, site)
    if condition == "null_general":  # G_null: neurons_dir is then the null fine-tune's
        return load_general(neurons_dir, site)
    if condition in ("specific", "crossed"):
        return load_specific(neurons_dir, topic, site)
    if condition == "all":
        general = load_general(neurons_dir, site)
        return NeuronSet.every(general.site, general.n_layers, general.width)
    if condition == "complement":
        return load_general(neurons_dir, site).complement()
    raise ConfigError(
        f"unknown patching condition {condition!r}",
        "use general, specific, all, complement, null_general, crossed, dose<x> or "
        "specific-random-s<k> (with a seed)",
    )


def treated_set(neurons_dir, spec: dict) -> NeuronSet:
    """The set a random control stands in for: G (patching) or the top n% of G (InhibitFT's F_n
    and patching's dose, spec "n", "of")."""
    if spec["treated"] == "general":
        return load_general(neurons_dir, spec["site"])
    return inhibited_set(neurons_dir, n=spec["n"], of=spec["of"], site=spec["site"])


def random_control(neurons_dir, spec: dict, seed: int) -> tuple[NeuronSet, dict]:
    """Draw `spec["draw"]` of a random control (method.md: Activation patching, InhibitFT) and its report.

    As many random neurons as the treated set (G or F_n, `treated_set`), never inside it (nor
    inside G with spec "exclude": "general", the dose-response control), with its per-layer
    counts where a layer has enough other neurons and the shortfall spilled to the nearest
    layers otherwise (`neurons.random_like`); the report counts them per layer.
    """
    treated = treated_set(neurons_dir, spec)
    excluded = treated
    if spec.get("exclude") == "general":
        excluded = load_general(neurons_dir, spec["site"])
    control = random_like(treated, seed=draw_seed(seed, spec["draw"]), exclude=excluded)
    return control, {**spec, "seed": seed, **control_report(treated, control)}


SPECIFIC_RANDOM = condition_kind("specific_random")  # S_t's control (its draws: -s<k>)


def specific_random(neurons_dir, topic: str, *, site: str, seed: int, draw: int) -> NeuronSet:
    """S_t's size-matched random control (method.md: Teacher-forced readout): as many random
    neurons as S_t with its per-layer counts, none in N_t = G | S_t (`neurons.random_like`),
    seeded by the seed, the draw and the topic."""
    import zlib

    specific = load_specific(neurons_dir, topic, site)
    general = load_general(neurons_dir, site)
    n_t = general.as_mask() | specific.as_mask()
    exclude = NeuronSet.from_mask(n_t, torch.zeros(n_t.shape), specific.site)
    topic_seed = draw_seed(seed, draw) + zlib.crc32(topic.encode())
    return random_like(specific, seed=topic_seed, exclude=exclude)


def save_control(control: NeuronSet, report: dict, path, report_path) -> None:
    control.save(path)
    write_json(report_path, report)
