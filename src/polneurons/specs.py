"""What a run of a kind is given (docs/design.md, "Run ids"): the spec of an InhibitFT run (what
it inhibits, with which strategy) and of a random control's draw (what set it stands in for).
The rules pass them as params, so a change of one reruns only the runs it changes; `runs`
spells and parses the kinds."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from polneurons.errors import ConfigError
from polneurons.kinds import parse_kind


@dataclass(frozen=True)
class InhibitSpec:
    """What an InhibitFT run inhibits and how (method.md: InhibitFT): F_n, the top n% of `of`
    (or, for a `random` control, draw `draw` of as many neurons outside it) at `site`, held by
    `strategy` (with `anchor_weight`, the anchor's lambda). The rule passes it as the param
    `inhibit` (`as_param`, what Snakemake compares to decide a rerun) and the script reads it
    back with `from_param`.

    >>> spec = InhibitSpec.from_param(inhibit_spec("ift-anchor-n5", {"of": "general",
    ...     "anchor_weight": 10}, "mlp_output"))
    >>> spec.strategy, spec.n, spec.as_param() == inhibit_spec("ift-anchor-n5",
    ...     {"of": "general", "anchor_weight": 10}, "mlp_output")
    ('anchor', 5.0, True)
    """

    strategy: str
    n: float
    of: str
    random: bool
    site: str
    anchor_weight: float | None = None
    draw: int | None = None

    def as_param(self) -> dict:
        """The rule's param: every field that is set, in field order.

        >>> InhibitSpec("freeze_rows", 5.0, "general", False, "mlp_output").as_param()["n"]
        5.0
        """
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_param(cls, param: dict) -> InhibitSpec:
        """The spec a rule's param `inhibit` holds.

        >>> InhibitSpec.from_param({"strategy": "anchor", "n": 5.0, "of": "general",
        ...     "random": True, "site": "mlp_output", "anchor_weight": 10, "draw": 1}).draw
        1
        """
        return cls(**param)

    def neurons(self, neurons_dir, control=None, inhibited_from=None):
        """The set this run inhibits: the drawn random control's (`control`, rule
        random_control), else the top n% of `of` in `neurons_dir`, or of G_null's folder
        `inhibited_from` for the null control (`neuron_store.inhibited_set`).

        >>> from polneurons.neurons import NeuronSet
        >>> drawn = NeuronSet.every("mlp_output", 2, 4)
        >>> import tempfile, pathlib; folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = drawn.save(folder / "control.pt")
        >>> spec = InhibitSpec("anchor", 5.0, "general", True, "mlp_output", 10, draw=0)
        >>> len(spec.neurons(None, control=folder / "control.pt"))
        8
        """
        from polneurons.neuron_store import inhibited_set
        from polneurons.neurons import NeuronSet

        if self.random:
            return NeuronSet.load(control)
        return inhibited_set(
            neurons_dir, n=self.n, of=self.of, site=self.site, from_dir=inhibited_from
        )

    def training(self, neurons) -> dict:
        """What `finetune.finetune(inhibit=...)` takes: the strategy, the site, the neurons by
        layer and the anchor's lambda.

        >>> from polneurons.neurons import NeuronSet
        >>> spec = InhibitSpec("stopgrad", 5.0, "general", False, "mlp_output")
        >>> sorted(spec.training(NeuronSet.every("mlp_output", 2, 4)))
        ['anchor_weight', 'neurons', 'site', 'strategy']
        """
        return {
            "strategy": self.strategy,
            "site": self.site,
            "neurons": neurons.by_layer(),
            "anchor_weight": self.anchor_weight,
        }


def inhibit_spec(kind: str, inhibitft: dict, site: str) -> dict:
    """The `InhibitSpec` param of what an InhibitFT kind (ift-<strategy>-n<n>, nift-<strategy>-n<n>,
    rnd-<strategy>-n<n>-s<draw>) inhibits; nift takes its F_n from G_null, which the rule
    passes as its `inhibited_from` input (`Kind.localized_on`), not as a field here.

    >>> inhibit_spec("rnd-anchor-n5-s1", {"of": "general", "anchor_weight": 10}, "mlp_output")
    {'strategy': 'anchor', 'n': 5.0, 'of': 'general', 'random': True, 'site': 'mlp_output', 'anchor_weight': 10, 'draw': 1}
    """
    parsed = parse_kind(kind)
    if parsed.family not in ("ift", "nift", "rnd"):
        raise ConfigError(
            f"{kind!r} is not an InhibitFT run kind",
            "use ift-<strategy>-n<n>, nift-<strategy>-n<n> or rnd-<strategy>-n<n>-s<draw>",
        )
    return InhibitSpec(
        strategy=parsed.strategy,
        n=parsed.n,
        of=inhibitft["of"],
        random=parsed.family == "rnd",
        site=site,
        # the anchor's lambda: a param only of the runs it changes
        anchor_weight=inhibitft["anchor_weight"] if parsed.strategy == "anchor" else None,
        draw=parsed.draw,
    ).as_param()


def control_spec(kind: str, inhibitft: dict, site: str) -> dict:
    """What a random-control kind stands in for: patch-random-s<k> -> G, rnd-...-s<k> -> F_n.

    >>> control_spec("patch-random-s0", {}, "mlp_output")
    {'treated': 'general', 'site': 'mlp_output', 'draw': 0}
    """
    parsed = parse_kind(kind)
    if not parsed.is_control:
        raise ConfigError(
            f"{kind!r} is not a random control",
            "use patch-random-s<k> or rnd-<strategy>-n<n>-s<k>",
        )
    if parsed.family == "patch" and parsed.n is not None:  # outside G, like the top n% of G
        dose = {"treated": "top", "n": parsed.n, "of": "general", "exclude": "general"}
        return {**dose, "site": site, "draw": parsed.draw}
    if parsed.family == "patch":
        return {"treated": "general", "site": site, "draw": parsed.draw}
    return {
        "treated": "top",
        "n": parsed.n,
        "of": inhibitft["of"],
        "site": site,
        "draw": parsed.draw,
    }
