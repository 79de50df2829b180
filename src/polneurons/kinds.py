"""Run kinds: what each kind of run is called, how it parses and what it needs, each declared
once (docs/design.md, "Run ids"). A run is ``<leaning>/<source>/<kind>`` (`polneurons.runs`);
the kinds (docs/method.md, sections 3, 7, 8):

==================================  =========================================  ==============
kind                                what it is                                 trained
==================================  =========================================  ==============
``ft``                              vanilla fine-tune M_s on the source topic  yes
``ftctl``                           vanilla control of InhibitFT (its own      yes
                                    ``inhibitft.finetune`` overrides)
``null``                            null fine-tune: the same schedule and      yes
                                    count on neutral answers (G_null)
``ift-<strategy>-n<n>``             InhibitFT, F_n (top n% of G) inhibited     yes
``nift-<strategy>-n<n>``            InhibitFT's null control: as many neurons  yes
                                    as F_n inhibited, the top of G_null
``rnd-<strategy>-n<n>-s<draw>``     InhibitFT on draw <draw> of a random set   yes
                                    the size of F_n, outside F_n
``patch-<set>``                     M0 with M_s's activations of one neuron    no
                                    set patched in (``general``, ``specific``,
                                    ``all`` coordinates, ``complement`` of G,
                                    ``crossed``: S_t on the other topics,
                                    ``null_general``: G_null)
``patch-random-s<draw>``            the same with draw <draw> of a random set  no
                                    the size of G, outside G
``patch-dose<x>``                   the same with the top x% of G by score     no
                                    (``patching.dose``)
``patch-dose<x>-random-s<draw>``    draw <draw> of a random set the size of    no
                                    the top x% of G, outside G
``patch-specific-random-s<draw>``   each topic's draw <draw> of a random set   no
                                    the size of S_t, outside N_t (drawn in
                                    the job)
``restore-n<n>``                    InhibitFT's vanilla control generating     no
                                    with F_n restored to M0's values
                                    (``inhibitft.restore``)
==================================  =========================================  ==============

Each row is one `Form` of `FORMS`, declared once; the wildcard constraints, the parser and each
property of a parsed `Kind` are generated from those declarations.

A random control's kind always ends in ``-s<draw>`` (draw 0, 1, ..., ``controls.seeds`` of
them), so an older run named without a draw is never taken for a current one.

A trained kind may end in ``-t<k>``: training replicate k (k = 1 .. ``training_seeds`` - 1)
of the same run, trained with seed ``seed + k`` on the same examples (method.md: Training seeds).
Replicate 0 carries no suffix: it is the run the neurons are localized on and the
patching uses. In the tables, where a kind has replicates, replicate 0 is labelled ``-t0`` and
the kind's own name is the row pooled over its replicates (`seed_labels`).

>>> kind = parse_kind("rnd-freeze_rows-n5-s1")
>>> kind.family, kind.n, kind.draw, kind.base
('rnd', 5.0, 1, 'rnd-freeze_rows-n5')
>>> inhibit_kind("freeze_rows", 7.5, draw=0)
'rnd-freeze_rows-n7.5-s0'
>>> parse_kind("rnd-freeze_rows-n5-s1-t2").replicate, parse_kind("ift-freeze_rows-n5-t2").first
(2, 'ift-freeze_rows-n5')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from polneurons.errors import ConfigError

NUMBER = r"[0-9]+(?:\.[0-9]+)?"  # n% or x% as written in a run id (format_n)

STRATEGY = r"(?P<strategy>[a-z_]+)"

DRAW = r"-s(?P<draw>[0-9]+)"  # a draw of a random set: draw 0, 1, ..., controls.seeds - 1


@dataclass(frozen=True)
class Form:
    """One way of writing a run kind, declared once in `FORMS`: the wildcard constraints, the
    parser, its error message and every property of a parsed `Kind` are read from there.

    `body` is the kind's regex before its suffixes, with a named group for each field it
    carries (strategy, n, patched). A `drawn_by` kind ends in -s<draw>, a draw of a random set
    (drawn by rule random_control, or by the job itself); a `replicated` one may end in -t<k>,
    a training replicate. `localized_on` is the localized run whose neurons the kind takes
    (None: it takes none). `test_sets` is what a patched run answers: every test set (all),
    each topic's own with that topic's set (own), or each topic's set on every other topic
    (others). `condition` is its name in patching.conditions (None: another key asks for it).

    >>> FORM_OF["rnd"].written, FORM_OF["rnd"].drawn_by
    ('rnd-<strategy>-n<n>-s<draw>', 'random_control')
    """

    name: str
    body: str
    written: str
    trained: bool = False
    replicated: bool = False
    drawn_by: str | None = None
    localized_on: str | None = None
    test_sets: str = "all"
    condition: str | None = None

    @property
    def family(self) -> str:
        """ft, ftctl, null, ift, nift, rnd, patch or restore: the text before the first dash.

        >>> FORM_OF["patch-dose-random"].family
        'patch'
        """
        return self.name.split("-")[0]

    def pattern(self, pooled: bool = False, replicates: bool = True, groups: bool = True) -> str:
        """This form's regex. With `pooled` (a table's label) a drawn kind may come without its
        draw (and then without a replicate: the row pools both) and replicate 0 may be written
        -t0; without `replicates`, no -t<k>; without `groups`, no named groups (a Snakemake
        wildcard constraint).

        >>> FORM_OF["ft"].pattern(groups=False)
        'ft(?:-t(?:[1-9][0-9]*))?'
        """
        replicate = ""
        if self.replicated and replicates:
            replicate = rf"(?:-t(?P<replicate>{'0|' if pooled else ''}[1-9][0-9]*))?"
        tail = replicate
        if self.drawn_by:
            tail = rf"(?:{DRAW}{replicate})?" if pooled else DRAW + replicate
        text = self.body + tail
        return text if groups else re.sub(r"\(\?P<[a-z_]+>", "(?:", text)

    def parse(self, text: str, pooled: bool = False) -> Kind | None:
        """The Kind `text` is when written in this form, else None.

        >>> FORM_OF["ift"].parse("ift-anchor-n5-t1").replicate, FORM_OF["ft"].parse("null")
        (1, None)
        """
        match = re.fullmatch(self.pattern(pooled), text)
        if match is None:
            return None
        fields = match.groupdict()
        return Kind(
            text,
            self.family,
            strategy=fields.get("strategy"),
            n=None if fields.get("n") is None else float(fields["n"]),
            patched=fields.get("patched"),
            draw=None if fields.get("draw") is None else int(fields["draw"]),
            replicate=int(fields.get("replicate") or 0),
            form=self.name,
        )


def _patched(patched: str, body: str = "", written: str = "", **declared) -> Form:
    """A patching form: M0 with M_s's activations of one neuron set written in; a form written
    without a placeholder is asked for by its name in patching.conditions (dashes as _)."""
    body = body or f"patch-(?P<patched>{patched})"
    written = written or f"patch-{patched}" + ("-s<draw>" if declared.get("drawn_by") else "")
    condition = None if "<" in written.removesuffix("-s<draw>") else patched.replace("-", "_")
    return Form(f"patch-{patched}", body, written, condition=condition, **declared)


def _inhibited(arm: str, **declared) -> Form:
    """An InhibitFT form: F_n (or the set standing in for it) held during training."""
    written = f"{arm}-<strategy>-n<n>" + ("-s<draw>" if declared.get("drawn_by") else "")
    body = rf"{arm}-{STRATEGY}-n(?P<n>{NUMBER})"
    return Form(arm, body, written, trained=True, replicated=True, **declared)


# Every run kind (docs/method.md, sections 3, 7 and 8; the table in this module's docstring)
FORMS = (
    Form("ft", "ft", "ft", trained=True, replicated=True),
    Form("ftctl", "ftctl", "ftctl", trained=True, replicated=True),
    Form("null", "null", "null", trained=True),
    _inhibited("ift", localized_on="ft"),
    _inhibited("nift", localized_on="null"),
    _inhibited("rnd", localized_on="ft", drawn_by="random_control"),
    _patched("general", localized_on="ft"),
    _patched("specific", localized_on="ft", test_sets="own"),
    _patched("all", localized_on="ft"),
    _patched("complement", localized_on="ft"),
    _patched("crossed", localized_on="ft", test_sets="others"),
    _patched("null_general", localized_on="null"),
    _patched("random", localized_on="ft", drawn_by="random_control"),
    # S_t's size-matched control: as many random neurons outside N_t, drawn by the job per topic
    _patched("specific-random", localized_on="ft", drawn_by="job", test_sets="own"),
    _patched(
        "dose", rf"patch-(?P<patched>dose)(?P<n>{NUMBER})", "patch-dose<x>", localized_on="ft"
    ),
    _patched(
        "dose-random",
        rf"patch-dose(?P<n>{NUMBER})-(?P<patched>random)",
        "patch-dose<x>-random-s<draw>",
        localized_on="ft",
        drawn_by="random_control",
    ),
    Form("restore", rf"restore-n(?P<n>{NUMBER})", "restore-n<n>", localized_on="ft"),
)

FORM_OF = {form.name: form for form in FORMS}

TRAINED_FAMILIES = tuple(dict.fromkeys(form.family for form in FORMS if form.trained))

# patching.conditions, each the name of one form: the sets patched by name and the drawn ones
CONDITION_FORM = {form.condition: form for form in FORMS if form.condition}

PATCH_CONDITIONS = tuple(CONDITION_FORM)

PATCH_SETS = tuple(c for c, form in CONDITION_FORM.items() if not form.drawn_by)


def kinds_pattern(forms, replicates: bool = True) -> str:
    """The wildcard constraint of the kinds written in these forms (no named groups).

    >>> kinds_pattern([FORM_OF["null"], FORM_OF["restore"]])
    'null|restore-n(?:[0-9]+(?:\\\\.[0-9]+)?)'
    """
    return "|".join(form.pattern(replicates=replicates, groups=False) for form in forms)


def _forms(*families: str) -> list[Form]:
    return [form for form in FORMS if form.family in families]


# The wildcard constraints of the rules, generated from FORMS
TRAIN_KIND = kinds_pattern(form for form in FORMS if form.trained)

VANILLA_KIND = kinds_pattern(_forms("ft", "ftctl", "null"))

INHIBIT_KIND = kinds_pattern(_forms("ift", "nift", "rnd"))

PATCH_KIND = kinds_pattern(_forms("patch"))

PATCH_CONDITION = "|".join(
    form.pattern(groups=False).removeprefix("patch-") for form in _forms("patch")
)

RESTORE_KIND = kinds_pattern(_forms("restore"))

# the draws rule random_control draws (a replicate of a draw uses the draw's set)
CONTROL_KIND = kinds_pattern(
    (form for form in FORMS if form.drawn_by == "random_control"), replicates=False
)

# the runs neurons are localized on (replicate 0 of each: localized_kinds)
LOCALIZED_KIND = kinds_pattern(
    (FORM_OF[name] for name in dict.fromkeys(f.localized_on for f in FORMS if f.localized_on)),
    replicates=False,
)

KIND = kinds_pattern(FORMS)


@dataclass(frozen=True)
class Kind:
    """One run kind, parsed: `family` is ft, ftctl, null, ift, nift, rnd, patch or restore;
    `form` the name of its `Form`, where every other property is declared.

    >>> parse_kind("ift-anchor-n5").family
    'ift'
    """

    text: str
    family: str
    strategy: str | None = None
    n: float | None = None
    patched: str | None = None
    draw: int | None = None
    replicate: int = 0
    form: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    @property
    def declared(self) -> Form:
        """The form this kind is written in.

        >>> parse_kind("patch-crossed").declared.test_sets
        'others'
        """
        return FORM_OF[self.form]

    @property
    def first(self) -> str:
        """The kind of training replicate 0 (the kind without its -t<k>).

        >>> parse_kind("ift-anchor-n5-t1").first
        'ift-anchor-n5'
        """
        return split_replicate(self.text)[0]

    @property
    def trained(self) -> bool:
        """Whether the run trains an adapter (every kind but patching and restore).

        >>> parse_kind("ft").trained, parse_kind("patch-general").trained
        (True, False)
        """
        return self.declared.trained

    @property
    def base(self) -> str:
        """The kind without its draw (what the draws of a random control are pooled under)
        and without its training replicate.

        >>> parse_kind("rnd-anchor-n5-s2-t1").base
        'rnd-anchor-n5'
        """
        return split_draw(self.first)[0]

    @property
    def is_control(self) -> bool:
        """Whether this is a draw of a random control (its neurons come from `random_control`).

        >>> parse_kind("patch-random-s0").is_control, parse_kind("patch-general").is_control
        (True, False)
        """
        return self.declared.drawn_by == "random_control" and self.draw is not None

    @property
    def needs_neurons(self) -> bool:
        """Whether the run takes localized neurons.

        >>> parse_kind("restore-n5").needs_neurons, parse_kind("null").needs_neurons
        (True, False)
        """
        return self.localized_on is not None

    @property
    def localized_on(self) -> str | None:
        """The localized run whose neurons this kind takes (`localized_kinds`): null for the
        kinds of G_null (nift-..., patch-null_general), ft for every other kind that takes
        neurons, None for the rest.

        >>> parse_kind("nift-freeze_rows-n5").localized_on, parse_kind("patch-general").localized_on
        ('null', 'ft')
        """
        return self.declared.localized_on


def parse_kind(kind: str, pooled: bool = False) -> Kind:
    """The parsed run kind; ConfigError (one line) for text that is none. With `pooled` (a
    table's label), a random control may come without its draw (the row the tables pool its
    draws under) and replicate 0 may be written -t0 (`seed_labels`).

    >>> parse_kind("patch-dose30-random-s1").patched, parse_kind("patch-random", pooled=True).draw
    ('random', None)
    """
    for form in FORMS:
        parsed = form.parse(kind, pooled)
        if parsed is not None:
            return parsed
    replicated = ", ".join(dict.fromkeys(form.family for form in FORMS if form.replicated))
    raise ConfigError(
        f"{kind!r} is not a run kind",
        f"use {', '.join(form.written for form in FORMS)} ({replicated} may end in -t<replicate>)",
    )


def answered_sets(kind: str, topics, test_sets) -> list[tuple[str | None, list[str]]]:
    """What a patched run answers (its form's `test_sets`), as (the topic whose own set is
    patched, None for a set of no topic; the test sets it answers with that set).

    >>> answered_sets("patch-general", ["race", "science"], ["race", "science", "dataset2"])
    [(None, ['race', 'science', 'dataset2'])]
    >>> answered_sets("patch-crossed", ["race", "science"], ["race", "science", "dataset2"])
    [('race', ['science']), ('science', ['race'])]
    """
    declared = parse_kind(kind).declared.test_sets
    if declared == "own":
        return [(topic, [topic]) for topic in topics]
    if declared == "others":
        return [(topic, [other for other in topics if other != topic]) for topic in topics]
    return [(None, list(test_sets))]


def format_n(n: float) -> str:
    """n% as written in a run id: 5 -> '5', 7.5 -> '7.5'.

    >>> format_n(5.0), format_n(7.5)
    ('5', '7.5')
    """
    return f"{n:g}"


def with_draw(kind: str, draw: int) -> str:
    """Draw `draw` of a random control: patch-random -> patch-random-s0.

    >>> with_draw("patch-random", 0)
    'patch-random-s0'
    """
    return f"{kind}-s{draw}"


def split_draw(kind: str) -> tuple[str, int | None]:
    """(kind without its draw, draw); (kind, None) for a kind without a draw.

    >>> split_draw("patch-random-s2"), split_draw("patch-general")
    (('patch-random', 2), ('patch-general', None))
    """
    match = re.fullmatch(r"(?P<kind>.+)-s(?P<draw>[0-9]+)", kind)
    return (match["kind"], int(match["draw"])) if match else (kind, None)


def split_replicate(kind: str) -> tuple[str, int | None]:
    """(kind without its training replicate, replicate); (kind, None) without a -t<k>.

    >>> split_replicate("ft-t1"), split_replicate("ft")
    (('ft', 1), ('ft', None))
    """
    match = re.fullmatch(r"(?P<kind>.+)-t(?P<replicate>[0-9]+)", kind)
    return (match["kind"], int(match["replicate"])) if match else (kind, None)


def with_replicate(kind: str, replicate: int) -> str:
    """Training replicate `replicate` of a trained kind (0: the kind itself).

    >>> with_replicate("ft", 0), with_replicate("rnd-freeze_rows-n5-s0", 2)
    ('ft', 'rnd-freeze_rows-n5-s0-t2')
    """
    return kind if replicate == 0 else f"{kind}-t{replicate}"


def training_seed(seed: int, kind: str) -> int:
    """The seed training replicate k of a kind trains with: seed + k (LoRA init, example order;
    the examples themselves are drawn with `seed`, the same for every replicate).

    >>> training_seed(0, "ft"), training_seed(0, "ift-freeze_rows-n5-t2")
    (0, 2)
    """
    return seed + parse_kind(kind).replicate


def seed_labels(conditions) -> dict[str, str]:
    """The table label of each condition: where a kind has further training replicates
    (<kind>-t<k> among the conditions), its replicate 0 is labelled <kind>-t0, so that <kind>
    itself can name the row pooled over them (metrics.pool_replicates); others keep their name.

    >>> seed_labels(["base", "ft", "ft-t1", "patch-general"])["ft"]
    'ft-t0'
    """
    conditions = list(conditions)
    replicated_kinds = {
        split_replicate(c)[0] for c in conditions if split_replicate(c)[1] is not None
    }
    return {c: f"{c}-t0" if c in replicated_kinds else c for c in conditions}


def inhibit_kind(strategy: str, n: float, draw: int | None = None, null: bool = False) -> str:
    """ift-<strategy>-n<n>; with a draw the random control rnd-<strategy>-n<n>-s<draw>; with
    `null` the null control nift-<strategy>-n<n> (as many neurons as F_n, the top of G_null).

    >>> inhibit_kind("anchor", 5), inhibit_kind("anchor", 5, draw=1)
    ('ift-anchor-n5', 'rnd-anchor-n5-s1')
    >>> inhibit_kind("anchor", 5, null=True)
    'nift-anchor-n5'
    """
    if null:
        return f"nift-{strategy}-n{format_n(n)}"
    if draw is None:
        return f"ift-{strategy}-n{format_n(n)}"
    return with_draw(f"rnd-{strategy}-n{format_n(n)}", draw)


def random_counterpart(kind: str) -> str | None:
    """The pooled random control an InhibitFT kind is compared with (ift-S-nN -> rnd-S-nN),
    or the random patching set for a patching kind of G (patch-general -> patch-random); None
    for any other condition name.

    >>> random_counterpart("ift-anchor-n5"), random_counterpart("patch-general")
    ('rnd-anchor-n5', 'patch-random')
    """
    try:
        parsed = parse_kind(kind, pooled=True)
    except ConfigError:
        return None
    if parsed.family == "ift" and parsed.text == parsed.first:
        return f"rnd-{parsed.strategy}-n{format_n(parsed.n)}"
    if parsed.family == "patch" and parsed.patched == "general":
        return "patch-random"
    if parsed.family == "patch" and parsed.patched == "dose":
        return f"{parsed.text}-random"
    return None


def inhibitft_controls(kind: str) -> list[str]:
    """The pooled controls an InhibitFT kind is compared with, paired (method.md: InhibitFT):
    its random control, its null control (as many of G_null's top neurons) and the
    training-free mitigation at the same n (restore); [] otherwise. The tables pair those
    that ran.

    >>> inhibitft_controls("ift-freeze_rows-n5")
    ['rnd-freeze_rows-n5', 'nift-freeze_rows-n5', 'restore-n5']
    """
    try:
        parsed = parse_kind(kind, pooled=True)
    except ConfigError:
        return []
    if parsed.family != "ift" or parsed.text != parsed.first:
        return []
    return [
        random_counterpart(kind),
        inhibit_kind(parsed.strategy, parsed.n, null=True),
        restore_kind(parsed.n),
    ]


def restore_kind(n: float) -> str:
    """restore-n<n>: InhibitFT's vanilla control generating with F_n restored to M0's values.

    >>> restore_kind(7.5)
    'restore-n7.5'
    """
    return f"restore-n{format_n(n)}"


def patch_kind(patched: str, draw: int | None = None) -> str:
    """patch-<set>, or with a draw patch-random-s<draw>.

    >>> patch_kind("general"), patch_kind("random", 1)
    ('patch-general', 'patch-random-s1')
    """
    return f"patch-{patched}" if draw is None else with_draw(f"patch-{patched}", draw)


def readout_control_input(kind: str) -> str:
    """The name of a drawn control's neuron set among the readout's inputs (an identifier).

    >>> readout_control_input("patch-dose30-random-s1")
    'control_dose30_random_s1'
    """
    return "control_" + kind.removeprefix("patch-").replace("-", "_")


def dose_kinds(dose: float, draws) -> list[str]:
    """The top `dose`% of G (patch-dose<x>) and its random draws (patch-dose<x>-random-s<k>).

    >>> dose_kinds(30, [0, 1])
    ['patch-dose30', 'patch-dose30-random-s0', 'patch-dose30-random-s1']
    """
    kind = f"patch-dose{format_n(dose)}"
    return [kind] + [with_draw(f"{kind}-random", k) for k in draws]


def condition_kind(condition: str) -> str:
    """The kind (a drawn one: its draws pooled) of a name in patching.conditions.

    >>> condition_kind("general"), condition_kind("specific_random")
    ('patch-general', 'patch-specific-random')
    """
    return CONDITION_FORM[condition].written.removesuffix("-s<draw>")
