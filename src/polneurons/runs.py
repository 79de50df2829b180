"""Run ids: the one definition of what each run is called, how it parses and what it needs
(docs/design.md, "Run ids").

Every per-run file lives at ``<results>/<model>/<run>/<name>``, where ``<run>`` is ``base`` (the
untouched model M0) or ``<leaning>/<source>/<kind>``. The kinds (docs/method.md, sections 3, 7, 8):

==================================  =========================================  ==============
kind                                what it is                                 trained
==================================  =========================================  ==============
``ft``                              vanilla fine-tune M_s on the source topic  yes
``ftctl``                           vanilla control of InhibitFT (its own      yes
                                    ``inhibitft.finetune`` overrides)
``ift-<strategy>-n<n>``             InhibitFT, F_n (top n% of G) inhibited     yes
``rnd-<strategy>-n<n>-s<draw>``     InhibitFT on draw <draw> of a random set   yes
                                    the size of F_n, outside F_n
``patch-<set>``                     M0 with M_s's activations of one neuron    no
                                    set patched in (``general``, ``specific``,
                                    ``all`` coordinates, ``complement`` of G)
``patch-random-s<draw>``            the same with draw <draw> of a random set  no
                                    the size of G, outside G
==================================  =========================================  ==============

A random control's kind always ends in ``-s<draw>`` (draw 0, 1, ..., ``controls.seeds`` of
them), so an older run named without a draw is never taken for a current one.

>>> run = parse_run("right/crime_and_gun/rnd-freeze_rows-n5-s1")
>>> run.kind.family, run.kind.n, run.kind.draw, run.kind.base
('rnd', 5.0, 1, 'rnd-freeze_rows-n5')
>>> inhibit_kind("freeze_rows", 7.5, draw=0)
'rnd-freeze_rows-n7.5-s0'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from polneurons.errors import ConfigError

BASE = "base"
TRAINED_FAMILIES = ("ft", "ftctl", "ift", "rnd")
PATCH_SETS = ("general", "specific", "all", "complement")
# Kind patterns (also the Snakemake wildcard constraints, so every rule file uses these)
DRAW = r"-s[0-9]+"
INHIBIT_KIND = rf"ift-[a-z_]+-n[0-9.]+|rnd-[a-z_]+-n[0-9.]+{DRAW}"
TRAIN_KIND = rf"ft|ftctl|{INHIBIT_KIND}"
PATCH_CONDITION = rf"{'|'.join(PATCH_SETS)}|random{DRAW}"
PATCH_KIND = rf"patch-({PATCH_CONDITION})"
CONTROL_KIND = rf"patch-random{DRAW}|rnd-[a-z_]+-n[0-9.]+{DRAW}"
KIND = rf"{TRAIN_KIND}|{PATCH_KIND}"

_KIND = re.compile(
    r"(?P<family>ft|ftctl)"
    r"|(?P<arm>ift|rnd)-(?P<strategy>[a-z_]+)-n(?P<n>[0-9]+(\.[0-9]+)?)(-s(?P<idraw>[0-9]+))?"
    r"|patch-(?P<set>[a-z_]+)(-s(?P<pdraw>[0-9]+))?"
)


@dataclass(frozen=True)
class Kind:
    """One run kind, parsed: `family` is ft, ftctl, ift, rnd or patch."""

    text: str
    family: str
    strategy: str | None = None
    n: float | None = None
    patched: str | None = None
    draw: int | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def trained(self) -> bool:
        """Whether the run trains an adapter (every kind but patching)."""
        return self.family in TRAINED_FAMILIES

    @property
    def base(self) -> str:
        """The kind without its draw (what the draws of a random control are pooled under)."""
        return self.text if self.draw is None else split_draw(self.text)[0]

    @property
    def is_control(self) -> bool:
        """Whether this is a draw of a random control (its neurons come from `random_control`)."""
        return self.draw is not None

    @property
    def needs_neurons(self) -> bool:
        """Whether the run takes the localized neurons of the source's vanilla run."""
        return self.family in ("ift", "rnd", "patch")


def parse_kind(kind: str, pooled: bool = False) -> Kind:
    """The parsed run kind; ConfigError (one line) for text that is none. With `pooled`, a
    random control may come without its draw (the row the tables pool its draws under)."""
    match = _KIND.fullmatch(kind)
    problem = match is None
    if match and match["arm"]:
        drawn = match["idraw"] is not None
        problem = drawn if match["arm"] == "ift" else not (drawn or pooled)
    if match and match["set"]:
        drawn = match["pdraw"] is not None
        if match["set"] == "random":
            problem = not (drawn or pooled)
        else:
            problem = drawn or match["set"] not in PATCH_SETS
    if problem:
        raise ConfigError(
            f"{kind!r} is not a run kind",
            "use ft, ftctl, ift-<strategy>-n<n>, rnd-<strategy>-n<n>-s<draw>, "
            f"patch-<{'|'.join(PATCH_SETS)}> or patch-random-s<draw>",
        )
    if match["family"]:
        return Kind(kind, match["family"])
    if match["arm"]:
        draw = match["idraw"]
        return Kind(
            kind,
            match["arm"],
            strategy=match["strategy"],
            n=float(match["n"]),
            draw=None if draw is None else int(draw),
        )
    draw = match["pdraw"]
    return Kind(kind, "patch", patched=match["set"], draw=None if draw is None else int(draw))


@dataclass(frozen=True)
class Run:
    """A run of one model: the base model (leaning, source and kind None) or a derived run."""

    leaning: str | None = None
    source: str | None = None
    kind: Kind | None = None

    def __str__(self) -> str:
        return BASE if self.kind is None else f"{self.leaning}/{self.source}/{self.kind}"

    @property
    def condition(self) -> str:
        """The column the tables group by: the kind, or 'base'."""
        return BASE if self.kind is None else str(self.kind)


def parse_run(run: str) -> Run:
    """`base` or `<leaning>/<source>/<kind>` as a Run."""
    if run == BASE:
        return Run()
    parts = run.split("/")
    if len(parts) != 3:
        raise ConfigError(f"{run!r} is not a run id", "use base or <leaning>/<source>/<kind>")
    return Run(parts[0], parts[1], parse_kind(parts[2]))


def run_of_path(path: str | Path) -> dict:
    """{model, leaning, source, condition} of a per-run file or folder,
    ``<results>/<model>/base/<name>`` or ``<results>/<model>/<leaning>/<source>/<kind>/<name>``.

    >>> run_of_path("results/smollm2/right/race/ft/ratings.jsonl")["condition"]
    'ft'
    """
    parts = Path(path).parts
    if parts[-2] == BASE:
        return {"model": parts[-3], "leaning": None, "source": None, "condition": BASE}
    model, leaning, source, kind = parts[-5:-1]
    return {"model": model, "leaning": leaning, "source": source, "condition": kind}


def format_n(n: float) -> str:
    """n% as written in a run id: 5 -> '5', 7.5 -> '7.5'."""
    return f"{n:g}"


def with_draw(kind: str, draw: int) -> str:
    """Draw `draw` of a random control: patch-random -> patch-random-s0."""
    return f"{kind}-s{draw}"


def split_draw(kind: str) -> tuple[str, int | None]:
    """(kind without its draw, draw); (kind, None) for a kind without a draw."""
    match = re.fullmatch(r"(?P<kind>.+)-s(?P<draw>[0-9]+)", kind)
    return (match["kind"], int(match["draw"])) if match else (kind, None)


def inhibit_kind(strategy: str, n: float, draw: int | None = None) -> str:
    """ift-<strategy>-n<n>, or with a draw the random control rnd-<strategy>-n<n>-s<draw>."""
    if draw is None:
        return f"ift-{strategy}-n{format_n(n)}"
    return with_draw(f"rnd-{strategy}-n{format_n(n)}", draw)


def random_counterpart(kind: str) -> str | None:
    """The pooled random control an InhibitFT kind is compared with (ift-S-nN -> rnd-S-nN),
    or the random patching set for a patching kind of G (patch-general -> patch-random); None
    for any other condition name."""
    try:
        parsed = parse_kind(kind, pooled=True)
    except ConfigError:
        return None
    if parsed.family == "ift":
        return f"rnd-{parsed.strategy}-n{format_n(parsed.n)}"
    if parsed.family == "patch" and parsed.patched == "general":
        return "patch-random"
    return None


def patch_kind(patched: str, draw: int | None = None) -> str:
    """patch-<set>, or with a draw patch-random-s<draw>."""
    return f"patch-{patched}" if draw is None else with_draw(f"patch-{patched}", draw)


def control_draws(config: dict) -> list[int]:
    """The draws of every random control (controls.seeds of them)."""
    return list(range(config["controls"]["seeds"]))


def random_control_at(inhibitft: dict, n: float) -> bool:
    """Whether InhibitFT at n% also trains the random-inhibition control (inhibitft.random_control)."""
    control = inhibitft["random_control"]
    return control if isinstance(control, bool) else n in control


def inhibitft_control_kind(config: dict) -> str:
    """The vanilla run InhibitFT is compared with: ftctl when inhibitft.finetune overrides, else ft."""
    return "ftctl" if config["inhibitft"]["finetune"] else "ft"


def inhibitft_kinds(config: dict) -> list[str]:
    """The kinds InhibitFT adds per (model, leaning, source): inhibited runs and random draws."""
    ift = config["inhibitft"]
    if not ift["enabled"]:
        return []
    kinds = []
    for strategy in ift["strategies"]:
        for n in ift["n"]:
            kinds.append(inhibit_kind(strategy, n))
            if random_control_at(ift, n):
                kinds += [inhibit_kind(strategy, n, k) for k in control_draws(config)]
    return kinds


def patch_kinds(config: dict) -> list[str]:
    """The kinds patching adds per (model, leaning, source), one per draw of the random set."""
    if not config["patching"]["enabled"]:
        return []
    kinds = []
    for condition in config["patching"]["conditions"]:
        if condition == "random":
            kinds += [patch_kind("random", k) for k in control_draws(config)]
        else:
            kinds.append(patch_kind(condition))
    return kinds


def run_ids(config: dict, kinds, sources=None) -> list[str]:
    """`<leaning>/<source>/<kind>` for every leaning, source (default source_topics) and kind."""
    return [
        f"{lean}/{src}/{kind}"
        for lean in config["leanings"]
        for src in sources or config["source_topics"]
        for kind in kinds
    ]


def alternatives(values) -> str:
    """A regex matching exactly one of `values`."""
    return "|".join(sorted(re.escape(str(v)) for v in values))


def run_pattern(config: dict, kinds: str = KIND) -> str:
    """The regex of the run ids of this config whose kind matches `kinds` (or base)."""
    leanings, sources = alternatives(config["leanings"]), alternatives(config["source_topics"])
    return rf"{BASE}|({leanings})/({sources})/({kinds})"


def inhibit_spec(kind: str, inhibitft: dict, site: str) -> dict:
    """What an InhibitFT kind (ift-<strategy>-n<n>, rnd-<strategy>-n<n>-s<draw>) inhibits."""
    parsed = parse_kind(kind)
    if parsed.family not in ("ift", "rnd"):
        raise ConfigError(
            f"{kind!r} is not an InhibitFT run kind",
            "use ift-<strategy>-n<n> or rnd-<strategy>-n<n>-s<draw>",
        )
    spec = {
        "strategy": parsed.strategy,
        "n": parsed.n,
        "of": inhibitft["of"],
        "random": parsed.family == "rnd",
        "site": site,
    }
    return spec if parsed.draw is None else {**spec, "draw": parsed.draw}


def control_spec(kind: str, inhibitft: dict, site: str) -> dict:
    """What a random-control kind stands in for: patch-random-s<k> -> G, rnd-...-s<k> -> F_n."""
    parsed = parse_kind(kind)
    if not parsed.is_control:
        raise ConfigError(
            f"{kind!r} is not a random control",
            "use patch-random-s<k> or rnd-<strategy>-n<n>-s<k>",
        )
    if parsed.family == "patch":
        return {"treated": "general", "site": site, "draw": parsed.draw}
    return {
        "treated": "top",
        "n": parsed.n,
        "of": inhibitft["of"],
        "site": site,
        "draw": parsed.draw,
    }
