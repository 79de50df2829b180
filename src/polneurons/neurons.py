"""Neuron localization (PNLAC, method.md: PNLAC): top-k% sets, general and topic-specific neurons, overlap
and bootstrap stability, and the inhibited set F_n (method.md: InhibitFT).

A neuron is a coordinate (layer, index) at one site; a NeuronSet keeps its neurons in canonical
order (ascending layer, then index) with one score each. Ties in any ranking are broken by that
canonical order, so every selection is deterministic.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from polneurons.errors import ConfigError, DataError, IntegrityError
from polneurons.io import load_torch_verified, save_torch, write_text

NEURON_SET_FORMAT = "polneurons.neuronset/1"


@dataclass(eq=False)
class NeuronSet:
    """A set of neurons of one site: parallel layer, index and score tensors, with the site's
    shape (method.md: PNLAC).

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> len(g), g.site
    (3, 'mlp_output')
    """

    layers: torch.Tensor  # int64 [n]
    indices: torch.Tensor  # int64 [n], position at the site (< width)
    scores: torch.Tensor  # float32 [n]
    site: str
    n_layers: int
    width: int

    def __post_init__(self):
        self.layers = torch.as_tensor(self.layers, dtype=torch.long).flatten()
        self.indices = torch.as_tensor(self.indices, dtype=torch.long).flatten()
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).flatten()
        n = len(self.layers)
        if len(self.indices) != n or len(self.scores) != n:
            raise ValueError("layers, indices and scores must have the same length")
        if n and not (
            0 <= self.layers.min() <= self.layers.max() < self.n_layers
            and 0 <= self.indices.min() <= self.indices.max() < self.width
        ):
            raise ValueError(f"neuron outside a {self.n_layers} x {self.width} site")
        flat, order = torch.sort(self.flat)
        if n > 1 and not bool((flat[1:] != flat[:-1]).all()):
            raise ValueError("a neuron appears twice in the set")
        self.layers, self.indices, self.scores = (
            self.layers[order],
            self.indices[order],
            self.scores[order],
        )

    @classmethod
    def from_mask(cls, mask: torch.Tensor, scores: torch.Tensor, site: str) -> NeuronSet:
        """The neurons where `mask` [n_layers, width] is true, each with its entry in `scores`.

        >>> mask = torch.tensor([[True, False], [False, True]])
        >>> NeuronSet.from_mask(mask, torch.ones(2, 2), "mlp_output").flat
        tensor([0, 3])
        """
        layers, indices = mask.nonzero(as_tuple=True)
        n_layers, width = mask.shape
        return cls(layers, indices, scores[mask], site, n_layers, width)

    @classmethod
    def every(cls, site: str, n_layers: int, width: int) -> NeuronSet:
        """Every coordinate of the site (the `all` patching condition), score 0.

        >>> len(NeuronSet.every("mlp_output", n_layers=2, width=4))
        8
        """
        return cls.from_mask(
            torch.ones(n_layers, width, dtype=torch.bool), torch.zeros(n_layers, width), site
        )

    def complement(self) -> NeuronSet:
        """Every coordinate of the site outside this set (score 0): with it, the whole site.

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.complement().flat
        tensor([0, 1, 3, 5, 6])
        """
        return NeuronSet.from_mask(
            ~self.as_mask(), torch.zeros(self.n_layers, self.width), self.site
        )

    @property
    def flat(self) -> torch.Tensor:
        """layer * width + index: one integer per neuron.

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.flat
        tensor([2, 4, 7])
        """
        return self.layers * self.width + self.indices

    def __len__(self) -> int:
        return len(self.layers)

    def by_layer(self) -> dict[int, torch.Tensor]:
        """layer -> indices (ascending), for the layers that hold at least one neuron.

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.by_layer()
        {0: tensor([2]), 1: tensor([0, 3])}
        """
        return {
            int(layer): self.indices[self.layers == layer]
            for layer in self.layers.unique().tolist()
        }

    def per_layer_counts(self) -> torch.Tensor:
        """Neurons per layer, [n_layers].

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.per_layer_counts()
        tensor([1, 2])
        """
        return torch.bincount(self.layers, minlength=self.n_layers)

    def as_mask(self) -> torch.Tensor:
        """The set as a boolean mask [n_layers, width].

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.as_mask().sum().item()
        3
        """
        mask = torch.zeros(self.n_layers, self.width, dtype=torch.bool)
        mask[self.layers, self.indices] = True
        return mask

    def to_frame(self):
        """One row per neuron: layer, index, score (a pandas DataFrame).

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> g.to_frame().columns.tolist()
        ['layer', 'index', 'score']
        """
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": self.layers.numpy(),
                "index": self.indices.numpy(),
                "score": self.scores.numpy(),
            }
        )

    def save(self, path) -> str:
        """Write the set atomically to `path` (.pt) and its sha256 to `path`.sha256; returns it.

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / 'g.pt'
        >>> len(g.save(path))
        64
        """
        path = Path(path)
        digest = save_torch(
            {
                "format": NEURON_SET_FORMAT,
                "layers": self.layers,
                "indices": self.indices,
                "scores": self.scores,
                "site": self.site,
                "n_layers": self.n_layers,
                "width": self.width,
            },
            path,
        )
        write_text(_sidecar(path), f"{digest}  {path.name}\n")
        return digest

    @classmethod
    def load(cls, path) -> NeuronSet:
        """Read a set written by save(), refusing it unless it matches its sha256 sidecar.

        >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / 'g.pt'
        >>> _ = g.save(path)
        >>> NeuronSet.load(path).flat.tolist()
        [2, 4, 7]
        """
        path = Path(path)
        fix = f"delete {path} and rerun the rule that makes it"
        try:
            digest = _sidecar(path).read_text().split()[0]
        except (FileNotFoundError, IndexError):
            raise IntegrityError(f"{_sidecar(path)} is missing or empty", fix) from None
        obj = load_torch_verified(path, digest)
        try:
            if obj["format"] != NEURON_SET_FORMAT:
                raise ValueError(f"format {obj['format']!r}")
            return cls(
                obj["layers"],
                obj["indices"],
                obj["scores"],
                obj["site"],
                obj["n_layers"],
                obj["width"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{path} is not a neuron set ({exc})", fix) from None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _count_for_percent(total: int, percent: float) -> int:
    """How many of `total` items make `percent`%: floor, but at least one (as the authors)."""
    if not 0 < percent <= 100:
        raise ConfigError(
            f"a neuron percentage must be in (0, 100], got {percent}", "fix the config"
        )
    return max(1, math.floor(total * percent / 100))


def _rank(scores: torch.Tensor) -> torch.Tensor:
    """Positions sorted by descending score along the last dim; ties keep their original order."""
    if scores.isnan().any():
        raise ValueError("scores contain NaN")
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


RANK_WITHIN = ("all", "layer")


def top_k_percent(r: torch.Tensor, k: float, within: str = "all") -> torch.Tensor:
    """Boolean mask of the top k% of the neurons of r [..., n_layers, width] (docs/method.md,
    "PNLAC"): of all neurons, layers pooled (``all``, the paper), or of each layer (``layer``).

    >>> top_k_percent(torch.tensor([[1.0, 2.0], [30.0, 40.0]]), 50).tolist()
    [[False, False], [True, True]]
    >>> top_k_percent(torch.tensor([[1.0, 2.0], [30.0, 40.0]]), 50, within="layer").tolist()
    [[False, True], [False, True]]
    """
    # paper: N_t = top k% of all neurons by r_t (ties: lower layer, then lower index, first)
    if within == "all":
        ranked = r.flatten(-2)
    elif within == "layer":
        ranked = r
    else:
        raise ConfigError(f"unknown neurons.rank_within {within!r}", f"use one of {RANK_WITHIN}")
    n_top = _count_for_percent(ranked.shape[-1], k)
    top = _rank(ranked)[..., :n_top]
    mask = torch.zeros(ranked.shape, dtype=torch.bool).scatter_(-1, top, True)
    return mask.view(r.shape)


def localize(
    r_by_topic: dict[str, torch.Tensor],
    k: float,
    site: str = "mlp_output",
    rank_within: str = "all",
) -> tuple[NeuronSet, dict[str, NeuronSet]]:
    """General neurons G and topic-specific neurons S_t from the contrasts r_t [n_layers, width],
    N_t ranked as `rank_within` says (`top_k_percent`).

    >>> r = {"race": torch.tensor([[0.9, 0.1], [0.8, 0.2]]), "science": torch.tensor([[0.7, 0.3], [0.1, 0.6]])}
    >>> general, specific = localize(r, k=50)
    >>> general.flat.tolist(), specific["science"].flat.tolist()
    ([0], [3])
    """
    # method.md: PNLAC: G = intersection of the N_t, scored by the mean r_t; S_t = N_t \ G, scored by r_t
    if not r_by_topic:
        raise ValueError("localize needs at least one topic")
    topics = list(r_by_topic)
    r = torch.stack([r_by_topic[t].float() for t in topics])  # stack refuses unequal shapes
    if r.dim() != 3:
        raise ValueError("each r_t must be [n_layers, width]")
    in_top = top_k_percent(r, k, rank_within)
    general_mask = in_top.all(dim=0)
    general = NeuronSet.from_mask(general_mask, r.mean(dim=0), site)
    specific = {
        t: NeuronSet.from_mask(in_top[i] & ~general_mask, r[i], site) for i, t in enumerate(topics)
    }
    return general, specific


def _same_site(a: NeuronSet, b: NeuronSet) -> None:
    if (a.site, a.n_layers, a.width) != (b.site, b.n_layers, b.width):
        raise ValueError(
            f"neuron sets from different sites: {a.site} {a.n_layers}x{a.width} "
            f"vs {b.site} {b.n_layers}x{b.width}"
        )


def jaccard(a: NeuronSet, b: NeuronSet) -> float:
    """|a & b| / |a | b| over neuron coordinates; 1.0 for two empty sets.

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> jaccard(g, g), jaccard(g, g.complement())
    (1.0, 0.0)
    """
    _same_site(a, b)
    shared = int(torch.isin(a.flat, b.flat).sum())
    union = len(a) + len(b) - shared
    return shared / union if union else 1.0


def draw_seed(seed: int, draw: int) -> int:
    """The generator seed of random-control draw `draw` under the config `seed` (method.md: Activation patching, InhibitFT).

    Distinct for every (seed, draw) pair, so the draws of one config are independent and a
    draw does not reappear as another draw of a neighbouring seed.

    >>> draw_seed(0, 0) != draw_seed(0, 1)
    True
    """
    digest = hashlib.sha256(f"polneurons-random-control-{seed}-{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def layer_quotas(counts: list[int], free: list[int]) -> tuple[list[int], list[int]]:
    """How many random neurons each layer gives, for a control matching `counts` per layer.

    Every layer first gives its own count, or all of its `free` (not excluded) neurons when it
    has fewer; that shortfall is the layer's `unmatched` count. Each unmatched neuron then spills
    to the nearest layer that still has free neurons (distance in layers; on a tie the lower
    layer first; the short layers are served in ascending order), so the control keeps its size
    and stays as close to the treated set's depth profile as the exclusion allows (method.md: Activation patching, InhibitFT).
    Returns (quota, unmatched), one entry per layer; ConfigError if all layers together have
    fewer free neurons than `counts` asks.

    >>> layer_quotas([3, 1], [2, 5])
    ([2, 2], [1, 0])
    """
    if sum(free) < sum(counts):
        raise ConfigError(
            f"a random control needs {sum(counts)} neurons but only {sum(free)} are outside "
            "the treated set",
            "lower the neuron percentage (neurons.k or inhibitft.n)",
        )
    quota = [min(c, f) for c, f in zip(counts, free, strict=True)]
    unmatched = [c - q for c, q in zip(counts, quota, strict=True)]
    left = [f - q for f, q in zip(free, quota, strict=True)]
    n_layers = len(counts)
    for layer in range(n_layers):
        need = unmatched[layer]
        for distance in range(1, n_layers):
            if need == 0:
                break
            for other in (layer - distance, layer + distance):
                if 0 <= other < n_layers and left[other] and need:
                    take = min(need, left[other])
                    quota[other] += take
                    left[other] -= take
                    need -= take
    return quota, unmatched


def random_like(neuron_set: NeuronSet, seed: int, exclude: NeuronSet | None = None) -> NeuronSet:
    """Random neurons (seeded, score 0) with `neuron_set`'s per-layer counts, avoiding `exclude`.

    Where a layer has too few neurons outside `exclude`, all of them are taken and the rest
    spill to the nearest layers (`layer_quotas`); `control_report` counts them.

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> control = random_like(g, seed=0, exclude=g)
    >>> len(control), jaccard(control, g)
    (3, 0.0)
    """
    allowed = torch.ones(neuron_set.n_layers, neuron_set.width, dtype=torch.bool)
    if exclude is not None:
        _same_site(neuron_set, exclude)
        allowed &= ~exclude.as_mask()
    quota, _ = layer_quotas(neuron_set.per_layer_counts().tolist(), allowed.sum(dim=1).tolist())
    generator = torch.Generator().manual_seed(seed)
    layers, indices = [], []
    for layer, count in enumerate(quota):
        if count == 0:
            continue
        candidates = allowed[layer].nonzero().flatten()
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
        layers.append(torch.full((count,), layer))
        indices.append(chosen)
    return NeuronSet(
        torch.cat(layers) if layers else torch.zeros(0, dtype=torch.long),
        torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long),
        torch.zeros(len(neuron_set)),
        neuron_set.site,
        neuron_set.n_layers,
        neuron_set.width,
    )


def control_report(treated: NeuronSet, control: NeuronSet) -> dict:
    """Per layer, how a random control matches its treated set (JSON-ready).

    `unmatched`: the treated neurons of a layer the control could not match there (the layer
    has too few neurons outside the treated set); `spilled_in`: control neurons a layer holds
    beyond its treated count; `overlap`: neurons in both sets (0 for a control drawn by
    `random_like(treated, seed, exclude=treated)`).

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> control_report(g, random_like(g, seed=0, exclude=g))['unmatched_total']
    0
    """
    _same_site(treated, control)
    want, got = treated.per_layer_counts(), control.per_layer_counts()
    return {
        "size": len(control),
        "treated_size": len(treated),
        "overlap": int(torch.isin(control.flat, treated.flat).sum()),
        "unmatched_total": int((want - got).clamp(min=0).sum()),
        "treated_per_layer": want.tolist(),
        "control_per_layer": got.tolist(),
        "unmatched_per_layer": (want - got).clamp(min=0).tolist(),
        "spilled_in_per_layer": (got - want).clamp(min=0).tolist(),
    }


def top_fraction(
    general: NeuronSet, n_percent: float, of: str = "general", total_neurons: int | None = None
) -> NeuronSet:
    """F_n: the highest-scoring neurons of G, n% of |G| (of="general") or of all neurons (of="all").

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> top_fraction(g, 50).flat.tolist()
    [4]
    """
    # method.md: InhibitFT: F_n = top n% of G by score; "n% of all neurons" is the config option of="all"
    if of == "general":
        base = len(general)
    elif of == "all":
        base = general.n_layers * general.width if total_neurons is None else total_neurons
    else:
        raise ConfigError(f"unknown F_n base {of!r}", "use 'general' or 'all'")
    count = _count_for_percent(base, n_percent)
    if count > len(general):
        raise ConfigError(
            f"F_n needs {count} neurons ({n_percent}% of {base}) but G holds only {len(general)}",
            "lower n or k, or take n% of G (of='general')",
        )
    return top_count(general, count)


def top_count(general: NeuronSet, count: int) -> NeuronSet:
    """The `count` highest-scoring neurons of a set (ties in the order of `_rank`).

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> top_count(g, 1).flat.tolist()
    [4]
    """
    if count > len(general):
        raise ConfigError(
            f"{count} neurons are needed but the set holds only {len(general)}",
            "lower inhibitft.n or raise neurons.k",
        )
    top = _rank(general.scores)[:count]
    return NeuronSet(
        general.layers[top],
        general.indices[top],
        general.scores[top],
        general.site,
        general.n_layers,
        general.width,
    )


def _mean_and_ci95(values: list[float]) -> tuple[float, list[float]]:
    x = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(x, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(x.mean()), [low, high]


def bootstrap_stability(
    dump_dirs_by_topic: dict,
    k: float,
    n_boot: int = 100,
    seed: int = 0,
    contrast: str = "rms",
    rank_within: str = "all",
) -> dict:
    """Stability of G when each topic's prompts are resampled with replacement (seeded).

    Reports the share of the full-data G found again in each replicate's G (mean, 95% percentile
    CI; None when the full G is empty), the Jaccard index of the two, and the replicate G sizes.
    Holds n_topics x n_boot x n_layers x width float32 contrasts in memory.

    >>> import pathlib, tempfile
    >>> from polneurons.activations import dump_activations
    >>> from polneurons.testing import tiny_lora, tiny_tokenizer
    >>> model, tok, tmp = tiny_lora(), tiny_tokenizer(), pathlib.Path(tempfile.mkdtemp())
    >>> dumps = {t: tmp / t for t in ("race", "science")}
    >>> for t, folder in dumps.items():
    ...     _ = dump_activations(model, tok, ["Guns", "Borders", "Taxes"], ["a", "b", "c"], folder)
    >>> stability = bootstrap_stability(dumps, k=30, n_boot=5)
    >>> stability["n_boot"], 0 <= stability["recovered_share_mean"] <= 1
    (5, True)
    """
    from polneurons.activations import contrast_from_sums, contrast_sums, read_dump

    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}", "fix the config")
    generator = torch.Generator().manual_seed(seed)
    topics = sorted(dump_dirs_by_topic)
    full_r, boot_r, sites = {}, {}, set()
    for topic in topics:
        manifest, _ = read_dump(dump_dirs_by_topic[topic])
        sites.add((manifest["site"], manifest["n_layers"], manifest["width"]))
        n_prompts = len(manifest["prompt_ids"])
        resampled = torch.randint(n_prompts, (n_boot, n_prompts), generator=generator)
        weights = torch.zeros(n_boot + 1, n_prompts)
        weights[0] = 1  # row 0: the full data
        weights[1:].scatter_add_(1, resampled, torch.ones(n_boot, n_prompts))
        r = contrast_from_sums(contrast_sums(dump_dirs_by_topic[topic], weights), contrast)
        full_r[topic], boot_r[topic] = r[0], r[1:]
    if len(sites) != 1:
        raise DataError(
            f"the dumps of {', '.join(topics)} come from different sites or models: {sorted(sites)}",
            "dump every topic of one fine-tuned model with the same neuron_site",
        )
    site = sites.pop()[0]
    general, _ = localize(full_r, k, site, rank_within)
    recovered, overlap, sizes = [], [], []
    for b in range(n_boot):
        replicate, _ = localize({t: boot_r[t][b] for t in topics}, k, site, rank_within)
        if len(general):
            recovered.append(float(torch.isin(general.flat, replicate.flat).float().mean()))
        overlap.append(jaccard(general, replicate))
        sizes.append(len(replicate))
    recovered_mean, recovered_ci = _mean_and_ci95(recovered) if recovered else (None, None)
    jaccard_mean, jaccard_ci = _mean_and_ci95(overlap)
    size_mean, size_ci = _mean_and_ci95(sizes)
    return {
        "k": k,
        "n_boot": n_boot,
        "seed": seed,
        "topics": topics,
        "general_size": len(general),
        "recovered_share_mean": recovered_mean,
        "recovered_share_ci95": recovered_ci,
        "jaccard_mean": jaccard_mean,
        "jaccard_ci95": jaccard_ci,
        "size_mean": size_mean,
        "size_ci95": size_ci,
        "size_min": min(sizes),
        "size_max": max(sizes),
    }


def layer_histogram(neuron_set: NeuronSet):
    """DataFrame with one row per layer (empty layers included): layer, count.

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> layer_histogram(g)['count'].tolist()
    [1, 2]
    """
    import pandas as pd

    counts = neuron_set.per_layer_counts()
    return pd.DataFrame({"layer": range(neuron_set.n_layers), "count": counts.numpy()})


def summary(general: NeuronSet, specific: dict[str, NeuronSet]) -> dict:
    """Set sizes and neurons per layer of G and each S_t (JSON-ready).

    >>> g = NeuronSet([0, 1, 1], [2, 0, 3], [0.5, 0.9, 0.7], "mlp_output", n_layers=2, width=4)
    >>> summary(g, {"race": g.complement()})["general"]["size"]
    3
    """

    def describe(neuron_set: NeuronSet) -> dict:
        return {"size": len(neuron_set), "per_layer": neuron_set.per_layer_counts().tolist()}

    return {
        "site": general.site,
        "n_layers": general.n_layers,
        "width": general.width,
        "total_neurons": general.n_layers * general.width,
        "general": describe(general),
        "specific": {topic: describe(s) for topic, s in specific.items()},
    }
