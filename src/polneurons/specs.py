"""What a run of a kind is given (docs/design.md, "Run ids"): the spec of an InhibitFT run (what
it inhibits, with which strategy) and of a random control's draw (what set it stands in for).
The rules pass them as params, so a change of one reruns only the runs it changes; `runs`
spells and parses the kinds."""

from __future__ import annotations

from polneurons.errors import ConfigError
from polneurons.runs import parse_kind


def inhibit_spec(kind: str, inhibitft: dict, site: str) -> dict:
    """What an InhibitFT kind (ift-<strategy>-n<n>, nift-<strategy>-n<n>,
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
    spec = {
        "strategy": parsed.strategy,
        "n": parsed.n,
        "of": inhibitft["of"],
        "random": parsed.family == "rnd",
        "site": site,
    }
    if parsed.strategy == "anchor":  # its lambda (a param only of the runs it changes)
        spec["anchor_weight"] = inhibitft["anchor_weight"]
    return spec if parsed.draw is None else {**spec, "draw": parsed.draw}


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
