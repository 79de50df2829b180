"""The plan of one configuration (docs/design.md, "Planning"): built once from the validated
config, it resolves each stage's defaults and lists every run of each role, and the tables each
table reads, as run ids ``<model>/<run>`` (`runs` spells the kinds). The rules
(`workflow/rules/common.smk`) only turn these ids into paths, so what the workflow computes is
decided here, where unit tests reach it (`tests/test_plan.py`), not only by whole runs.

>>> from polneurons.config import validate_config
>>> plan = Plan(validate_config({"models": ["smollm2"], "source_topics": ["race"],
...     "inhibitft": {"enabled": False}, "patching": {"enabled": False}}))
>>> plan.judged()
['smollm2/right/race/ft', 'smollm2/base']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from polneurons import runs
from polneurons.kinds import dose_kinds, parse_kind
from polneurons.runs import BASE


@dataclass(frozen=True)
class Plan:
    """What one validated configuration computes: its stage settings, the runs of each role and
    the tables each table reads (module docstring).

    >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
    ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
    >>> plan.models, plan.patching, plan.inhibitft
    (['smollm2'], True, True)
    """

    config: dict  # validated (config.validate_config): every default filled

    @classmethod
    def of(cls, config: dict) -> Plan:
        """The plan of a configuration given as written: validated (every default filled), or
        ConfigError in one line.

        >>> Plan.of({"source_topics": ["race"], "inhibitft": {"enabled": False}}).inhibitft
        False
        """
        from polneurons.config import validate_config

        return cls(validate_config(config))

    # ---------------------------------------------------------------- stage settings

    @property
    def models(self) -> list[str]:
        """The models run (`models`).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.models
        ['smollm2']
        """
        return list(self.config["models"])

    @property
    def patching(self) -> bool:
        """Whether activation patching runs (`patching.enabled`).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.patching
        True
        """
        return bool(self.config["patching"]["enabled"])

    @property
    def inhibitft(self) -> bool:
        """Whether InhibitFT runs (`inhibitft.enabled`).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibitft
        True
        """
        return bool(self.config["inhibitft"]["enabled"])

    @property
    def patch_sources(self) -> list[str]:
        """The source topics whose vanilla runs are patched (patching.source_topics; null: all).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.patch_sources
        ['race', 'science']
        """
        return list(self.config["patching"]["source_topics"] or self.config["source_topics"])

    @property
    def inhibitft_sources(self) -> list[str]:
        """The source topics InhibitFT runs on (inhibitft.source_topics; null: all).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibitft_sources
        ['race', 'science']
        """
        return list(self.config["inhibitft"]["source_topics"] or self.config["source_topics"])

    @property
    def localized_leanings(self) -> list[str]:
        """The leanings whose fine-tunes are localized, and so patched and inhibited
        (neurons.leanings; null: all). The others are fine-tuned and rated only (claim 1).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.localized_leanings
        ['right']
        """
        return list(self.config["neurons"]["leanings"] or self.config["leanings"])

    @property
    def control_kind(self) -> str:
        """The vanilla run InhibitFT is compared with: ftctl when inhibitft.finetune overrides.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.control_kind
        'ft'
        """
        return runs.inhibitft_control_kind(self.config)

    @property
    def null_kinds(self) -> list[str]:
        """The null fine-tune's kinds (null_finetune): trained and localized like ft, in the
        localized leanings (its training data, neutral answers, has no leaning).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.null_kinds
        []
        """
        return [k for k in runs.localized_kinds(self.config) if k != "ft"]

    @cached_property
    def inhibitft_kinds(self) -> list[str]:
        """InhibitFT's arms and controls per (model, leaning, source), in every replicate.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibitft_kinds
        ['ift-anchor-n5', 'rnd-anchor-n5-s0', 'rnd-anchor-n5-s1']
        """
        return runs.inhibitft_kinds(self.config)

    @cached_property
    def restore_kinds(self) -> list[str]:
        """The training-free mitigation per (model, leaning, InhibitFT source): restore-n<n>.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.restore_kinds
        ['restore-n5']
        """
        return runs.restore_kinds(self.config)

    @cached_property
    def patch_kinds(self) -> list[str]:
        """Every patching kind per (model, leaning, source), each draw of a random set apart.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.patch_kinds[:4]
        ['patch-general', 'patch-specific', 'patch-random-s0', 'patch-random-s1']
        """
        return runs.patch_kinds(self.config)

    @property
    def crossed_kinds(self) -> list[str]:
        """The specificity runs (S_t patched on the other topics): the patching table reads
        them apart from the conditions rated on their own topic.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.crossed_kinds
        []
        """
        return [k for k in self.patch_kinds if parse_kind(k).declared.test_sets == "others"]

    @property
    def patched_kinds(self) -> list[str]:
        """The patching kinds rated like any condition (all but the specificity runs).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> len(plan.patched_kinds) == len(plan.patch_kinds)
        True
        """
        return [k for k in self.patch_kinds if k not in self.crossed_kinds]

    @property
    def readout(self) -> bool:
        """Whether the teacher-forced readout runs (config.readout_planned).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.readout
        True
        """
        from polneurons.config import readout_planned

        return readout_planned(self.config)

    @property
    def ceiling_kinds(self) -> list[str]:
        """InhibitFT's ceiling in the readout (method.md: InhibitFT, the ceiling): F_n, the top
        n% of G, as patch-dose<n> at every n of inhibitft.n, with its random draws, when
        InhibitFT runs on n% of G.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.ceiling_kinds
        ['patch-dose5', 'patch-dose5-random-s0', 'patch-dose5-random-s1']
        """
        ift = self.config["inhibitft"]
        if not (ift["enabled"] and ift["of"] == "general"):
            return []
        draws = runs.control_draws(self.config)
        return [kind for n in ift["n"] for kind in dose_kinds(n, draws)]

    @property
    def readout_kinds(self) -> list[str]:
        """The patching kinds the readout scores in both directions: every one rated on its own
        topic (the specificity runs' S_t on other topics are not read out, and S_t's random
        draws the readout draws itself), and InhibitFT's ceiling sets (`ceiling_kinds`).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.readout_kinds[-3:]
        ['patch-dose5', 'patch-dose5-random-s0', 'patch-dose5-random-s1']
        """
        if not self.readout:
            return []
        # S_t's own random draws are drawn by the readout job itself (kinds.Form.drawn_by)
        scored = [k for k in self.patched_kinds if parse_kind(k).declared.drawn_by != "job"]
        return list(dict.fromkeys([*scored, *self.ceiling_kinds]))

    @property
    def crossed_readout(self) -> bool:
        """Whether the readout also scores each S_t on the other topics' pairs (the specificity
        runs' counterpart: with the readout and condition crossed).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.crossed_readout
        False
        """
        return bool(self.readout and self.crossed_kinds)

    def replicates(self, kinds) -> list[str]:
        """These trained kinds in every training replicate (training_seeds).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.replicates(["ft"])
        ['ft']
        """
        return runs.replicate_kinds(self.config, kinds)

    # ---------------------------------------------------------------- runs by role

    def runs(self, kinds, sources=None, base: bool = False, localized: bool = False) -> list[str]:
        """``<model>/<leaning>/<source>/<kind>`` over models, leanings (only the localized ones
        if `localized`) and sources (default source_topics), then ``<model>/base`` of every
        model if `base`.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.runs(["ft"], ["race"], base=True)
        ['smollm2/right/race/ft', 'smollm2/base']
        """
        leanings = self.localized_leanings if localized else None
        ids = [
            f"{m}/{r}"
            for m in self.models
            for r in runs.run_ids(self.config, kinds, sources, leanings)
        ]
        return ids + ([f"{m}/{BASE}" for m in self.models] if base else [])

    def vanilla(self) -> list[str]:
        """Every vanilla fine-tune, in every training replicate.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.vanilla()
        ['smollm2/right/race/ft', 'smollm2/right/science/ft']
        """
        return self.runs(self.replicates(["ft"]))

    def inhibitft_runs(self, kinds=None, base: bool = True) -> list[str]:
        """InhibitFT's vanilla control and these InhibitFT kinds (default: all of them) on
        InhibitFT's sources, and the base model.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibitft_runs(["ift-anchor-n5"], base=False)
        ['smollm2/right/race/ft', 'smollm2/right/race/ift-anchor-n5', 'smollm2/right/science/ft', 'smollm2/right/science/ift-anchor-n5']
        """
        kinds = [
            *self.replicates([self.control_kind]),
            *(self.inhibitft_kinds if kinds is None else kinds),
        ]
        return self.runs(kinds, self.inhibitft_sources, base=base, localized=True)

    def restore_runs(self) -> list[str]:
        """The restore runs (InhibitFT's vanilla control, F_n restored to M0 at inference).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.restore_runs()
        ['smollm2/right/race/restore-n5', 'smollm2/right/science/restore-n5']
        """
        return self.runs(self.restore_kinds, self.inhibitft_sources, localized=True)

    def patched(self) -> list[str]:
        """Every patched run (the specificity runs included) on the patched sources.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.patched()[:2]
        ['smollm2/right/race/patch-general', 'smollm2/right/race/patch-specific']
        """
        if not self.patching:
            return []
        return self.runs(self.patch_kinds, self.patch_sources, localized=True)

    def judged(self) -> list[str]:
        """Every run the workflow generates and judges, once: vanilla (and the null fine-tune,
        claim 1's control), patched, InhibitFT, base.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> len(plan.judged()), plan.judged()[:2]
        (19, ['smollm2/right/race/ft', 'smollm2/right/science/ft'])
        """
        ids = self.stance_runs()
        ids += self.patched()
        if self.inhibitft:
            ids += self.inhibitft_runs() + self.restore_runs()
        return list(dict.fromkeys(ids))

    def trained(self) -> list[str]:
        """Every trained run, once: vanilla and null fine-tunes, InhibitFT's control and arms.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.trained()[:3]
        ['smollm2/right/race/ft', 'smollm2/right/science/ft', 'smollm2/right/race/ift-anchor-n5']
        """
        ids = self.runs(self.replicates(["ft"])) + self.runs(self.null_kinds, localized=True)
        if self.inhibitft:
            ids += self.inhibitft_runs(base=False)
        return list(dict.fromkeys(ids))

    def localized(self, kinds=("ft",)) -> list[str]:
        """The runs neurons are localized on (ft; the null fine-tune's with its kinds), in the
        localized leanings.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.localized()
        ['smollm2/right/race/ft', 'smollm2/right/science/ft']
        """
        return self.runs(list(kinds), localized=True)

    def control_draws(self, kinds, sources=None) -> list[str]:
        """The runs holding a drawn random set among these kinds: one per draw, whatever its
        training replicates (the replicates of a draw use the draw's one set).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.control_draws(["patch-random-s0", "patch-random-s1"], ["race"])
        ['smollm2/right/race/patch-random-s0', 'smollm2/right/race/patch-random-s1']
        """
        drawn = [parse_kind(k) for k in kinds]
        firsts = list(dict.fromkeys(k.first for k in drawn if k.is_control))
        return self.runs(firsts, sources, localized=True)

    def inhibition_effect_runs(self) -> list[tuple[str, str, str, str]]:
        """(model, leaning, source, kind) of every InhibitFT and random-inhibition run.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibition_effect_runs()[0]
        ('smollm2', 'right', 'race', 'ift-anchor-n5')
        """
        return [
            (m, lean, src, kind)
            for m in self.models
            for lean in self.localized_leanings
            for src in self.inhibitft_sources
            for kind in self.inhibitft_kinds
        ]

    # ---------------------------------------------------------------- tables

    def stance_runs(self) -> list[str]:
        """The stance tables' runs: every vanilla replicate, the null fine-tune (with
        null_finetune: CG without politics, claim 1's control) and the base model.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.stance_runs()
        ['smollm2/right/race/ft', 'smollm2/right/science/ft', 'smollm2/base']
        """
        vanilla = self.runs(self.replicates(["ft"]))
        return vanilla + self.runs(self.null_kinds, localized=True) + self.runs([], base=True)

    def patching_runs(self) -> list[str]:
        """The patching table's runs: vanilla, every patched condition rated on its own topic,
        and the base model, on the patched sources.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.patching_runs()[:3]
        ['smollm2/right/race/ft', 'smollm2/right/race/patch-general', 'smollm2/right/race/patch-specific']
        """
        return self.runs(["ft", *self.patched_kinds], self.patch_sources, base=True, localized=True)

    def readout_runs(self) -> list[str]:
        """The fine-tuned runs read out (one job per topic: every set, both directions).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.readout_runs()
        ['smollm2/right/race/ft', 'smollm2/right/science/ft']
        """
        return self.runs(["ft"], self.patch_sources, localized=True) if self.readout else []

    def readout_files(self) -> list[str]:
        """The readout's per-topic files (`<run>/readout/<topic>.csv`) of every run read out.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.readout_files()[0]
        'smollm2/right/race/ft/readout/crime_and_gun.csv'
        """
        topics = self.config["topics"]
        return [f"{run}/readout/{topic}.csv" for run in self.readout_runs() for topic in topics]

    def crossed_runs(self) -> list[str]:
        """The specificity runs (S_t patched on the other topics), on the patched sources.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.crossed_runs()
        []
        """
        return self.runs(self.crossed_kinds, self.patch_sources, localized=True)

    def inhibitft_arms(self) -> list[str]:
        """InhibitFT's own arms (not its controls), in every replicate.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.inhibitft_arms()
        ['ift-anchor-n5']
        """
        return [k for k in self.inhibitft_kinds if parse_kind(k).family == "ift"]

    def tables_made(self) -> set[str]:
        """The claim-readable tables this configuration makes (names of claims.TABLE_FILES).

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> sorted(plan.tables_made())[:4]
        ['contrasts', 'inhibitft', 'inhibitft_ll', 'neuron_sets']
        """
        made = {"tscg", "tscg_ll", "neuron_sets"}
        if self.null_kinds:  # the null fine-tune: CG against CG_null, G's depth against G_null's
            made |= {"tscg_null", "tscg_ll_null", "null_overlap"}
        if self.patching:
            made |= {"patching", "contrasts"}
            if self.crossed_kinds:  # S_t on the other topics: the specificity table
                made.add("specificity")
            if self.readout:
                made |= {"readout", "readout_contrasts"}
            if self.crossed_readout:  # S_t on the other topics' pairs
                made.add("specificity_ll")
        if self.inhibitft:
            made |= {"inhibitft", "versus", "inhibitft_ll"}
        return made

    def claim_tables(self) -> dict[str, str]:
        """{name: table file} of the tables the claims table reads: those the registered claims
        (tables.claims.CLAIMS) read, of the claims whose tables are all made.

        >>> plan = Plan.of({"models": ["smollm2"], "source_topics": ["race", "science"],
        ...     "controls": {"seeds": 2}, "inhibitft": {"strategies": ["anchor"], "n": [5], "restore": True}})
        >>> plan.claim_tables()["tscg"]
        'ts_cg.csv'
        """
        from polneurons.tables.claims import CLAIMS, TABLE_FILES

        made = self.tables_made()
        read = [name for entry in CLAIMS if set(entry.reads) <= made for name in entry.reads]
        return {name: TABLE_FILES[name] for name in dict.fromkeys(read)}
