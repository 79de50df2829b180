"""Run ids: what each run is called and which runs of each kind a configuration has
(docs/design.md, "Run ids").

Every per-run file lives at ``<results>/<model>/<run>/<name>``, where ``<run>`` is ``base`` (the
untouched model M0) or ``<leaning>/<source>/<kind>``; the kinds, their spelling and their
parser are `polneurons.kinds`.

>>> run = parse_run("right/crime_and_gun/rnd-freeze_rows-n5-s1")
>>> run.kind.family, run.kind.n, run.kind.draw, run.kind.base
('rnd', 5.0, 1, 'rnd-freeze_rows-n5')
>>> from polneurons.config import validate_config
>>> patch_kinds(validate_config({"controls": {"seeds": 1}, "inhibitft": {"enabled": False}}))
['patch-general', 'patch-specific', 'patch-random-s0']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from polneurons.errors import ConfigError
from polneurons.kinds import (
    CONDITION_FORM,
    KIND,
    Kind,
    condition_kind,
    dose_kinds,
    inhibit_kind,
    parse_kind,
    restore_kind,
    with_draw,
    with_replicate,
)

BASE = "base"


@dataclass(frozen=True)
class Run:
    """A run of one model: the base model (leaning, source and kind None) or a derived run.

    >>> parse_run("right/race/ft").source
    'race'
    """

    leaning: str | None = None
    source: str | None = None
    kind: Kind | None = None

    def __str__(self) -> str:
        return BASE if self.kind is None else f"{self.leaning}/{self.source}/{self.kind}"

    @property
    def condition(self) -> str:
        """The column the tables group by: the kind, or 'base'.

        >>> parse_run("right/race/ft").condition, parse_run("base").condition
        ('ft', 'base')
        """
        return BASE if self.kind is None else str(self.kind)


def parse_run(run: str) -> Run:
    """`base` or `<leaning>/<source>/<kind>` as a Run.

    >>> str(parse_run("right/race/patch-general").kind)
    'patch-general'
    """
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


def training_replicates(config: dict) -> list[int]:
    """The training replicates of every trained run (training_seeds of them).

    >>> training_replicates({"training_seeds": 3})
    [0, 1, 2]
    """
    return list(range(config["training_seeds"]))


def replicate_kinds(config: dict, kinds) -> list[str]:
    """Every training replicate of each of these trained kinds, replicate 0 first.

    >>> replicate_kinds({"training_seeds": 2}, ["ft", "null"])
    ['ft', 'ft-t1', 'null', 'null-t1']
    """
    return [with_replicate(k, r) for k in kinds for r in training_replicates(config)]


def restore_kinds(config: dict) -> list[str]:
    """The training-free mitigation's kinds per (model, leaning, InhibitFT source): one per n
    of inhibitft.n that inhibitft.restore names (true: every n).

    >>> from polneurons.config import validate_config
    >>> config = validate_config({"training_seeds": 2, "controls": {"seeds": 2}, "patching":
    ...     {"conditions": ["general", "random"], "dose": [30]}, "inhibitft": {"strategies":
    ...     ["anchor"], "n": [5], "restore": True}})
    >>> restore_kinds(config)
    ['restore-n5']
    """
    ift = config["inhibitft"]
    if not ift["enabled"]:
        return []
    return [restore_kind(n) for n in ift["n"] if random_control_at(ift, n, "restore")]


def control_draws(config: dict) -> list[int]:
    """The draws of every random control (controls.seeds of them).

    >>> control_draws({"controls": {"seeds": 3}})
    [0, 1, 2]
    """
    return list(range(config["controls"]["seeds"]))


def random_control_at(inhibitft: dict, n: float, control: str = "random_control") -> bool:
    """Whether InhibitFT at n% also trains the random-inhibition control (inhibitft.random_control),
    or with control="null_control" the null control (inhibitft.null_control), or with
    control="restore" runs the training-free mitigation (inhibitft.restore).

    >>> random_control_at({"restore": [5]}, 5, "restore")
    True
    >>> random_control_at({"random_control": False}, 5)
    False
    """
    at = inhibitft[control]
    return at if isinstance(at, bool) else n in at


def localized_kinds(config: dict) -> list[str]:
    """The trained kinds neurons are localized on: ft, and the null fine-tune if it runs.

    >>> localized_kinds({"null_finetune": True})
    ['ft', 'null']
    """
    return ["ft", "null"] if config["null_finetune"] else ["ft"]


def inhibitft_control_kind(config: dict) -> str:
    """The vanilla run InhibitFT is compared with: ftctl when inhibitft.finetune overrides, else ft.

    >>> inhibitft_control_kind({"inhibitft": {"finetune": {"lr": 1e-4}}})
    'ftctl'
    """
    return "ftctl" if config["inhibitft"]["finetune"] else "ft"


def inhibitft_kinds(config: dict) -> list[str]:
    """The kinds InhibitFT adds per (model, leaning, source): inhibited runs and random draws,
    each in every training replicate.

    >>> from polneurons.config import validate_config
    >>> config = validate_config({"training_seeds": 2, "controls": {"seeds": 2}, "patching":
    ...     {"conditions": ["general", "random"], "dose": [30]}, "inhibitft": {"strategies":
    ...     ["anchor"], "n": [5], "restore": True}})
    >>> inhibitft_kinds(config)[:3]
    ['ift-anchor-n5', 'ift-anchor-n5-t1', 'rnd-anchor-n5-s0']
    """
    ift = config["inhibitft"]
    if not ift["enabled"]:
        return []
    kinds = []
    for strategy in ift["strategies"]:
        for n in ift["n"]:
            kinds.append(inhibit_kind(strategy, n))
            if random_control_at(ift, n):
                kinds += [inhibit_kind(strategy, n, k) for k in control_draws(config)]
            if random_control_at(ift, n, "null_control"):
                kinds.append(inhibit_kind(strategy, n, null=True))
    return replicate_kinds(config, kinds)


def patch_kinds(config: dict) -> list[str]:
    """The kinds patching adds per (model, leaning, source), one per draw of the random set.

    >>> from polneurons.config import validate_config
    >>> config = validate_config({"training_seeds": 2, "controls": {"seeds": 2}, "patching":
    ...     {"conditions": ["general", "random"], "dose": [30]}, "inhibitft": {"strategies":
    ...     ["anchor"], "n": [5], "restore": True}})
    >>> patch_kinds(config)
    ['patch-general', 'patch-random-s0', 'patch-random-s1', 'patch-dose30', 'patch-dose30-random-s0', 'patch-dose30-random-s1']
    """
    if not config["patching"]["enabled"]:
        return []
    kinds = []
    for condition in config["patching"]["conditions"]:
        kind = condition_kind(condition)
        if CONDITION_FORM[condition].drawn_by:
            kinds += [with_draw(kind, k) for k in control_draws(config)]
        else:
            kinds.append(kind)
    for dose in config["patching"]["dose"]:
        kinds += dose_kinds(dose, control_draws(config))
    return kinds


def run_ids(config: dict, kinds, sources=None, leanings=None) -> list[str]:
    """`<leaning>/<source>/<kind>` for every leaning (default leanings), source (default
    source_topics) and kind.

    >>> run_ids({"leanings": ["left", "right"], "source_topics": ["race"]}, ["ft"])
    ['left/race/ft', 'right/race/ft']
    """
    return [
        f"{lean}/{src}/{kind}"
        for lean in leanings or config["leanings"]
        for src in sources or config["source_topics"]
        for kind in kinds
    ]


def alternatives(values) -> str:
    """A regex matching exactly one of `values`.

    >>> alternatives(["race", "crime_and_gun"])
    'crime_and_gun|race'
    """
    return "|".join(sorted(re.escape(str(v)) for v in values))


def run_pattern(config: dict, kinds: str = KIND) -> str:
    """The regex of the run ids of this config whose kind matches `kinds` (or base).

    >>> pattern = run_pattern({"leanings": ["right"], "source_topics": ["race"]})
    >>> bool(re.fullmatch(pattern, "right/race/ft")), bool(re.fullmatch(pattern, "left/race/ft"))
    (True, False)
    """
    leanings, sources = alternatives(config["leanings"]), alternatives(config["source_topics"])
    return rf"{BASE}|({leanings})/({sources})/({kinds})"
