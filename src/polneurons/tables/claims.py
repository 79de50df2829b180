"""The claims table (method.md: Claims and verdicts): each claim, its figure, control and verdict.

The claims are a registry (`CLAIMS`): one small function per claim, registered with the tables
it reads (`@claim("patching", "contrasts")`). A claim is in the table when every table it reads
was made; `plan.Plan.claim_tables` derives the claims table's inputs from the same registry, so
a new claim is one function here and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from polneurons.tables.common import (
    depth_against_null_verdict,
    interval_verdict,
    leaning_sign_verdict,
    non_inferiority_verdict,
)

CLAIM_COLUMNS = [
    "claim", "readout", "model", "leaning", "source", "measured", "measured_lo", "measured_hi",
    "control", "control_value", "difference", "difference_lo", "difference_hi", "rule", "verdict",
    "undefined_because",
]  # fmt: skip


# The instrument a claim row reads: the judge's stance S of generated answers, or the
# teacher-forced S_ll of held-out pairs under an intervention (method.md: Teacher-forced readout).
JUDGE = "judge"
TEACHER_FORCED = "teacher-forced, {direction}"
TEACHER_FORCED_LL = "teacher-forced"  # S_ll of the run itself on the log-likelihood pairs


def _claim(
    claim,
    row,
    measured,
    control="",
    control_value=None,
    diff=None,
    rule="",
    verdict="",
    why="",
    readout=JUDGE,
):
    value, lo, hi = measured
    d, d_lo, d_hi = diff if diff is not None else (None, None, None)
    if verdict == "undefined" and not why:
        why = "the figure the rule reads, or its CI, is undefined"
    return dict(
        claim=claim, readout=readout, model=row["model"], leaning=row["leaning"], source=row["source"],
        measured=value, measured_lo=lo, measured_hi=hi, control=control,
        control_value=control_value, difference=d, difference_lo=d_lo, difference_hi=d_hi,
        rule=rule, verdict=verdict, undefined_because=why if verdict == "undefined" else "",
    )  # fmt: skip


def _why(*rows) -> str:
    """Why the first of these table rows with an undefined recovered share has none."""
    for row in rows:
        if pd.isna(row.get("recovered")) and isinstance(row.get("why_undefined"), str):
            return row["why_undefined"]
    return ""


def _dose_label(kind: str) -> str:
    from polneurons.kinds import format_n, parse_kind

    return f"the top {format_n(parse_kind(kind).n)}% of G"


# The tables a claim may read: its name as a claim declares it, and the table file.
TABLE_FILES = {
    "tscg": "ts_cg.csv",
    "tscg_null": "ts_cg_versus_null.csv",
    "tscg_ll_null": "loglik_versus_null.csv",
    "neuron_sets": "neuron_sets.csv",
    "null_overlap": "null_overlap.csv",
    "patching": "patching.csv",
    "contrasts": "patching_contrasts.csv",
    "specificity": "specificity.csv",
    "inhibitft": "inhibitft_main.csv",
    "versus": "inhibitft_vs_random.csv",
    "inhibitft_ll": "inhibitft_loglik_cuts.csv",
    "specificity_ll": "specificity_readout.csv",
    "tscg_ll": "loglik_shift.csv",
    "readout": "readout.csv",
    "readout_contrasts": "readout_contrasts.csv",
}


@dataclass(frozen=True)
class Claim:
    """One claim: the tables it reads and the function that makes its rows from them."""

    name: str
    reads: tuple[str, ...]
    rows: Callable[..., list[dict]]  # rows(tables: {name: frame}, settings: dict) -> rows


CLAIMS: list[Claim] = []


def claim(*reads: str):
    """Register a claim function reading these tables (names of TABLE_FILES), in table order."""
    unknown = set(reads) - set(TABLE_FILES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}; known: {sorted(TABLE_FILES)}")

    def register(function):
        CLAIMS.append(Claim(function.__name__, reads, function))
        return function

    return register


def _vanilla(tscg: pd.DataFrame) -> pd.DataFrame:
    """The vanilla fine-tunes' rows of the TS/CG table (it also holds the null fine-tune's)."""
    return tscg[tscg["condition"] == "ft"] if "condition" in tscg.columns else tscg


@claim("tscg")
def cross_topic_shift(tables, settings) -> list[dict]:
    rows = []
    for _, r in _vanilla(tables["tscg"]).iterrows():
        direction = "above 0" if r["TS"] >= 0 else "below 0"
        rows.append(
            _claim(
                "1: fine-tuning on one topic shifts the others (CG)",
                r,
                (r["CG"], r["CG_lo"], r["CG_hi"]),
                rule="holds if the CI of CG excludes 0 on the side of TS",
                verdict=interval_verdict(r["CG_lo"], r["CG_hi"], direction),
            )
        )
    return rows


def _leaning_rows(cg: pd.DataFrame, name: str, readout: str) -> list[dict]:
    """Claim 1's leaning check per (model, source) with both leanings: `cg` has per (model,
    leaning, source) the columns value, lo, hi of the CG it reads (`name`)."""
    rows = []
    for _, cell in cg.groupby(["model", "source"], sort=False):
        by_leaning = {r["leaning"]: r for _, r in cell.iterrows()}
        if not {"left", "right"} <= set(by_leaning):
            continue
        left, right = by_leaning["left"], by_leaning["right"]
        rows.append(
            _claim(
                "1: the shift follows the fine-tune's leaning (CG of the left fine-tune below 0, "
                "of the right one above)",
                {**right, "leaning": "right vs left"},
                (right["value"], right["lo"], right["hi"]),
                control=f"the left fine-tune's {name}",
                control_value=left["value"],
                rule=f"holds if the CI of the left fine-tune's {name} lies below 0 and the right "
                "one's above 0",
                verdict=leaning_sign_verdict((left["lo"], left["hi"]), (right["lo"], right["hi"])),
                readout=readout,
            )
        )
    return rows


@claim("tscg")
def cross_topic_follows_leaning(tables, settings) -> list[dict]:
    """With both leanings fine-tuned on a source: the left fine-tune's CG is negative and the
    right one's positive (CG measures the fine-tune, not a drift every fine-tune makes)."""
    cg = _vanilla(tables["tscg"]).rename(columns={"CG": "value", "CG_lo": "lo", "CG_hi": "hi"})
    return _leaning_rows(cg, "CG", JUDGE)


def _vanilla_ll(loglik: pd.DataFrame) -> pd.DataFrame:
    """Per vanilla fine-tune (each training replicate its own row), TS_ll and CG_ll of the
    judge-free stance table (`tables.stance.loglik_shift`) side by side."""
    from polneurons.kinds import split_replicate

    keys = ["model", "leaning", "source", "condition"]
    vanilla = loglik[[split_replicate(str(c))[0] == "ft" for c in loglik["condition"]]]
    wide = {}
    for name in ("TS_ll", "CG_ll"):
        part = vanilla[vanilla["topic"] == name].set_index(keys)
        wide |= {
            name: part["dS_ll"],
            f"{name}_lo": part["dS_ll_lo"],
            f"{name}_hi": part["dS_ll_hi"],
        }
    return pd.DataFrame(wide).reset_index()


@claim("tscg_ll")
def cross_topic_shift_ll(tables, settings) -> list[dict]:
    """Claim 1 without a judge: CG_ll, the cross-topic shift of the log-likelihood stance on
    held-out pairs, and whether it follows the leaning."""
    vanilla = _vanilla_ll(tables["tscg_ll"])
    rows = []
    for _, r in vanilla.iterrows():
        direction = "above 0" if r["TS_ll"] >= 0 else "below 0"
        replicate = "" if r["condition"] == "ft" else f" ({r['condition']})"
        rows.append(
            _claim(
                f"1: fine-tuning on one topic shifts the others (CG){replicate}",
                r,
                (r["CG_ll"], r["CG_ll_lo"], r["CG_ll_hi"]),
                rule="holds if the CI of CG_ll (held-out pairs, no judge) excludes 0 on the side "
                "of TS_ll",
                verdict=interval_verdict(r["CG_ll_lo"], r["CG_ll_hi"], direction),
                readout=TEACHER_FORCED_LL,
            )
        )
    first = vanilla[vanilla["condition"].isin(["ft", "ft-t0"])]
    cg = first.rename(columns={"CG_ll": "value", "CG_ll_lo": "lo", "CG_ll_hi": "hi"})
    return rows + _leaning_rows(cg, "CG_ll", TEACHER_FORCED_LL)


@claim("tscg_null")
def cross_topic_beyond_null(tables, settings) -> list[dict]:
    """CG of the vanilla fine-tune minus that of the null fine-tune (the same schedule on
    neutral answers): the spill-over a fine-tune without politics also makes."""
    rows = []
    for _, r in tables["tscg_null"].iterrows():
        direction = "above 0" if r["TS_treated"] >= 0 else "below 0"
        rows.append(
            _claim(
                "1: fine-tuning on one topic shifts the others (CG) beyond a fine-tune without "
                "politics",
                r,
                (r["CG_treated"], r["CG_treated_lo"], r["CG_treated_hi"]),
                control=r["control"],
                control_value=r["CG_control"],
                diff=(r["CG"], r["CG_lo"], r["CG_hi"]),
                rule="holds if the paired CI of CG minus CG_null excludes 0 on the side of TS",
                verdict=interval_verdict(r["CG_lo"], r["CG_hi"], direction),
            )
        )
    return rows


@claim("tscg_ll_null")
def cross_topic_beyond_null_without_a_judge(tables, settings) -> list[dict]:
    """The same comparison on the held-out pairs' log-likelihoods (no judge): CG_ll of the
    vanilla fine-tune minus the null fine-tune's, paired over pairs."""
    rows = []
    for _, r in tables["tscg_ll_null"].iterrows():
        direction = "above 0" if r["TS_ll_treated"] >= 0 else "below 0"
        replicate = "" if r["treated"] == "ft" else f" ({r['treated']})"
        rows.append(
            _claim(
                "1: fine-tuning on one topic shifts the others (CG) beyond a fine-tune without "
                f"politics{replicate}",
                r,
                (r["CG_ll_treated"], r["CG_ll_treated_lo"], r["CG_ll_treated_hi"]),
                control=r["control"],
                control_value=r["CG_ll_control"],
                diff=(r["CG_ll"], r["CG_ll_lo"], r["CG_ll_hi"]),
                rule="holds if the paired CI of CG_ll minus CG_ll_null (held-out pairs, no "
                "judge) excludes 0 on the side of TS_ll",
                verdict=interval_verdict(r["CG_ll_lo"], r["CG_ll_hi"], direction),
                readout=TEACHER_FORCED_LL,
            )
        )
    return rows


@claim("neuron_sets")
def general_depth(tables, settings) -> list[dict]:
    rows = []
    neuron_sets = tables["neuron_sets"]
    for _, r in neuron_sets[neuron_sets["set"] == "general"].iterrows():
        third = r["n_layers"] / 3
        q25 = r["layer_q25"]
        rows.append(
            _claim(
                "2: G sits in middle and late layers (lower-quartile layer of G)",
                r,
                (q25, None, None),
                rule=f"holds if G's lower-quartile layer is >= n_layers / 3 ({third:g})",
                verdict="undefined" if pd.isna(q25) else "holds" if q25 >= third else "fails",
            )
        )
    return rows


@claim("null_overlap")
def general_depth_against_null(tables, settings) -> list[dict]:
    """G's depth beside G_null's, the general set of a fine-tune without politics."""
    return [
        _claim(
            "2: G sits in middle and late layers (lower-quartile layer of G) beyond a "
            "fine-tune without politics",
            r,
            (r["layer_q25_G"], None, None),
            control="G_null",
            control_value=r["layer_q25_G_null"],
            rule=f"holds if G's lower-quartile layer is >= n_layers / 3 ({r['n_layers'] / 3:g}) "
            "and G_null's is not; not shown if both are",
            verdict=depth_against_null_verdict(
                r["layer_q25_G"], r["layer_q25_G_null"], r["n_layers"]
            ),
        )
        for _, r in tables["null_overlap"].iterrows()
    ]


@claim("patching")
def specific_recovers(tables, settings) -> list[dict]:
    pooled = tables["patching"][tables["patching"]["test_set"] == "all"]
    return [
        _claim(
            "2: S_t patched on its own topic recovers part of the shift",
            r,
            (r["recovered"], r["recovered_lo"], r["recovered_hi"]),
            rule="holds if the CI of the recovered share lies above 0",
            verdict=interval_verdict(r["recovered_lo"], r["recovered_hi"]),
            why=_why(r),
        )
        for _, r in pooled[pooled["condition"] == "patch-specific"].iterrows()
    ]


# How the claims name the patched sets and the controls that are not named by their set
_READOUT_SETS = {"patch-general": "G", "patch-specific": "S_t on its own topic"}
_READOUT_CONTROLS = {"patch-specific-random": "as many random neurons outside N_t"}


def _one_draw(control: str, draws) -> str:
    """The rule's note where a random control (its draws pooled) ran one draw."""
    drawn = control.endswith("random")
    return " (one random draw: no spread over draws)" if drawn and draws == 1 else ""


@claim("patching", "contrasts")
def general_beyond_controls(tables, settings) -> list[dict]:
    """G (and each top x% of G) against each of its controls, and S_t on its own topic
    against as many random neurons outside N_t on the same topic (paired), by the judge."""
    patching, contrasts = tables["patching"], tables["contrasts"]
    pooled = patching[patching["test_set"] == "all"].set_index(["model", "leaning", "source"])
    claimed = contrasts["treated"].isin(list(_READOUT_SETS)) | contrasts["treated"].str.startswith(
        "patch-dose"
    )
    rows = []
    for _, c in contrasts[claimed].iterrows():
        key = (c["model"], c["leaning"], c["source"])
        arms = pooled.loc[[key]].set_index("condition")
        g, ctl = arms.loc[c["treated"]], arms.loc[c["control"]]
        treated = _READOUT_SETS.get(c["treated"]) or _dose_label(c["treated"])
        control = _READOUT_CONTROLS.get(c["control"], c["control"].removeprefix("patch-"))
        rows.append(
            _claim(
                f"2: {treated} recovers more of the shift than {control}",
                c,
                (g["recovered"], g["recovered_lo"], g["recovered_hi"]),
                control=c["control"],
                control_value=ctl["recovered"],
                diff=(c["difference"], c["difference_lo"], c["difference_hi"]),
                rule=f"holds if the paired CI of {treated} minus the control lies above 0"
                + _one_draw(c["control"], ctl.get("draws")),
                verdict=interval_verdict(c["difference_lo"], c["difference_hi"]),
                why=_why(g, ctl),
            )
        )
    return rows


# What a set written in each direction does to the fine-tuning shift (method.md: Teacher-forced
# readout): the sufficiency rows carry the judge rows' claims, the necessity rows their own.
_DOES = {"sufficiency": "recovers", "necessity": "removes"}


@claim("readout")
def specific_readout(tables, settings) -> list[dict]:
    """S_t's share of the S_ll shift on its own topic, pooled over topics, in both directions."""
    table = tables["readout"]
    pooled = table[(table["topic"] == "all") & (table["condition"] == "patch-specific")]
    rows = []
    for _, r in pooled.iterrows():
        does, direction = _DOES[r["direction"]], r["direction"]
        claim_text = "2: S_t patched on its own topic recovers part of the shift"
        if direction == "necessity":
            claim_text = "2: S_t restored to M0's values on its own topic removes part of the shift"
        rows.append(
            _claim(
                claim_text,
                r,
                (r["share"], r["share_lo"], r["share_hi"]),
                rule=f"holds if the CI of the share of the S_ll shift S_t {does} lies above 0",
                verdict=interval_verdict(r["share_lo"], r["share_hi"]),
                why=r["why_undefined"] if isinstance(r["why_undefined"], str) else "",
                readout=TEACHER_FORCED.format(direction=direction),
            )
        )
    return rows


@claim("readout_contrasts")
def general_readout_beyond_controls(tables, settings) -> list[dict]:
    """G (and each top x% of G) against each of its controls (as many random neurons outside G;
    the complement and G_null where they run), and S_t against as many random neurons outside
    N_t, in both directions."""
    contrasts = tables["readout_contrasts"]
    claimed = contrasts["treated"].isin(list(_READOUT_SETS)) | contrasts["treated"].str.startswith(
        "patch-dose"
    )
    rows = []
    for _, c in contrasts[claimed].iterrows():
        direction, does = c["direction"], _DOES[c["direction"]]
        treated = _READOUT_SETS.get(c["treated"]) or _dose_label(c["treated"])
        control = _READOUT_CONTROLS.get(c["control"], c["control"].removeprefix("patch-"))
        if direction == "sufficiency":
            claim_text = f"2: {treated} recovers more of the shift than {control}"
        else:
            claim_text = (
                f"2: {treated} restored to M0's values removes more of the shift than {control}"
            )
        rows.append(
            _claim(
                claim_text,
                c,
                (c["treated_share"], c["treated_lo"], c["treated_hi"]),
                control=c["control"],
                control_value=c["control_share"],
                diff=(c["difference"], c["difference_lo"], c["difference_hi"]),
                rule=f"holds if the paired CI of the share {treated} {does} minus the "
                f"control's lies above 0" + _one_draw(c["control"], c["draws"]),
                verdict=interval_verdict(c["difference_lo"], c["difference_hi"]),
                readout=TEACHER_FORCED.format(direction=direction),
            )
        )
    return rows


def _specificity_row(r, readout: str, unit: str = "shift") -> dict:
    """One claims row of a specificity table (`tables.patching.specificity`, the judge's, or
    `tables.readout.specificity_readout`)."""
    why = r.get("why_undefined")
    return _claim(
        f"2: S_t of {r['topic']} moves {r['topic']} more than the other topics",
        r,
        (r["on_t"], r["on_t_lo"], r["on_t_hi"]),
        control="S_t on the other topics",
        control_value=r["on_others"],
        diff=(r["difference"], r["difference_lo"], r["difference_hi"]),
        rule=f"holds if the paired CI of the {unit} on t minus the mean shift on the other "
        "topics lies above 0",
        verdict=r["verdict"],
        why=why if isinstance(why, str) else "",
        readout=readout,
    )


@claim("specificity")
def specificity(tables, settings) -> list[dict]:
    return [_specificity_row(r, JUDGE) for _, r in tables["specificity"].iterrows()]


@claim("specificity_ll")
def specificity_readout(tables, settings) -> list[dict]:
    return [
        _specificity_row(r, TEACHER_FORCED.format(direction=r["direction"]), "S_ll shift")
        for _, r in tables["specificity_ll"].iterrows()
    ]


@claim("inhibitft", "versus")
def inhibitft_cuts_cg(tables, settings) -> list[dict]:
    """Per InhibitFT run at the headline n: its cut of CG against random inhibition, against
    the null control where it ran, and TS kept."""
    from polneurons.kinds import inhibitft_controls, parse_kind

    inhibitft, versus = tables["inhibitft"], tables["versus"]
    headline_n, margin = settings["headline_n"], settings["ts_kept_margin"]

    def at_headline(frame, column):
        kinds = frame[column].map(lambda k: parse_kind(k, pooled=True))
        return frame[kinds.map(lambda k: k.family == "ift" and k.n == headline_n)]

    runs = inhibitft[inhibitft["source"] != "mean"]
    paired = versus.set_index(["model", "leaning", "source", "treated", "control"])
    rows = []
    for _, r in at_headline(runs, "condition").iterrows():
        random, null, restore = inhibitft_controls(r["condition"])
        key = (r["model"], r["leaning"], r["source"], r["condition"], random)
        has_control = key in paired.index
        d = paired.loc[key] if has_control else None
        cut = interval_verdict(r["relative_lo"], r["relative_hi"])
        beats = interval_verdict(d["relative_lo"], d["relative_hi"]) if has_control else "undefined"
        rows.append(
            _claim(
                f"3: InhibitFT at n = {headline_n:g} cuts CG (relative reduction; paper ~0.2)",
                r,
                (r["relative"], r["relative_lo"], r["relative_hi"]),
                control=random if has_control else "",
                control_value=(r["relative"] - d["relative"]) if has_control else None,
                diff=(d["relative"], d["relative_lo"], d["relative_hi"]) if has_control else None,
                rule="holds if the CI of the reduction and the paired CI of InhibitFT minus "
                "random both lie above 0",
                verdict="holds" if cut == beats == "holds" else cut if cut != "holds" else beats,
            )
        )
        for other, text, named in (
            (null, "on G cuts CG more than on G_null", "the null control"),
            (restore, "cuts CG more than restoring F_n at inference (no training)", "restore"),
        ):
            other_key = (*key[:4], other)
            if other_key not in paired.index:
                continue
            d = paired.loc[other_key]
            rows.append(
                _claim(
                    f"3: InhibitFT at n = {headline_n:g} {text}",
                    r,
                    (r["relative"], r["relative_lo"], r["relative_hi"]),
                    control=other,
                    control_value=r["relative"] - d["relative"],
                    diff=(d["relative"], d["relative_lo"], d["relative_hi"]),
                    rule=f"holds if the paired CI of InhibitFT minus {named} lies above 0",
                    verdict=interval_verdict(d["relative_lo"], d["relative_hi"]),
                )
            )
        rows.append(
            _claim(
                f"3: InhibitFT at n = {headline_n:g} keeps TS (TS_X / TS_FT)",
                r,
                (r["ts_kept"], r["ts_kept_lo"], r["ts_kept_hi"]),
                rule=f"holds if the CI of TS kept lies at or above {margin:g} "
                "(non-inferiority, scoring.ts_kept_margin), fails if it lies below",
                verdict=non_inferiority_verdict(r["ts_kept_lo"], r["ts_kept_hi"], margin),
            )
        )
    return rows


@claim("inhibitft_ll")
def inhibitft_cuts_cg_ll(tables, settings) -> list[dict]:
    """Claim 3 without a judge: per InhibitFT arm at the headline n, its cut of the cross-topic
    S_ll shift against each of its controls, and TS_ll kept (`tables.inhibitft.loglik_cuts`)."""
    from polneurons.kinds import parse_kind

    cuts, margin = tables["inhibitft_ll"], settings["ts_kept_margin"]
    kinds = cuts["condition"].map(lambda k: parse_kind(k, pooled=True))
    arms = cuts[kinds.map(lambda k: k.family == "ift" and k.n == settings["headline_n"])]
    rows = []
    for (_, _, _, condition), group in arms.groupby(
        ["model", "leaning", "source", "condition"], sort=False
    ):
        first = group.iloc[0]
        measured = (first["CG_ll_cut"], first["CG_ll_cut_lo"], first["CG_ll_cut_hi"])
        cut = interval_verdict(first["CG_ll_cut_lo"], first["CG_ll_cut_hi"])
        for _, r in group.iterrows():
            if not isinstance(r["versus"], str) or not r["versus"]:
                continue
            beats = interval_verdict(r["difference_lo"], r["difference_hi"])
            rows.append(
                _claim(
                    f"3: {condition} cuts the cross-topic S_ll shift more than {r['versus']}",
                    r,
                    measured,
                    control=r["versus"],
                    control_value=r["CG_ll_cut"] - r["difference"],
                    diff=(r["difference"], r["difference_lo"], r["difference_hi"]),
                    rule="holds if the CI of the cut and the paired CI of the cut minus the "
                    "control's both lie above 0",
                    verdict="holds"
                    if cut == beats == "holds"
                    else cut
                    if cut != "holds"
                    else beats,
                    readout=TEACHER_FORCED_LL,
                )
            )
        rows.append(
            _claim(
                f"3: {condition} keeps TS_ll (TS_ll_X / TS_ll_FT)",
                first,
                (first["TS_ll_kept"], first["TS_ll_kept_lo"], first["TS_ll_kept_hi"]),
                rule=f"holds if the CI of TS_ll kept lies at or above {margin:g} "
                "(non-inferiority, scoring.ts_kept_margin), fails if it lies below",
                verdict=non_inferiority_verdict(
                    first["TS_ll_kept_lo"], first["TS_ll_kept_hi"], margin
                ),
                readout=TEACHER_FORCED_LL,
            )
        )
    return rows


@claim("readout", "inhibitft")
def inhibitft_ceiling(tables, settings) -> list[dict]:
    """The most a mitigation holding F_n (or all of G) at M0's values could cut: the share of
    the cross-topic S_ll shift that restoring the set to M0's values inside M_s removes
    (method.md: InhibitFT, the ceiling), pooled over the topics other than the source. It is
    also the teacher-forced figure of `restore`, the training-free mitigation."""
    from polneurons.kinds import format_n
    from polneurons.tables.readout import CROSS_TOPIC

    table = tables["readout"]
    headline = f"patch-dose{format_n(settings['headline_n'])}"
    sets = {headline: f"F_{format_n(settings['headline_n'])}", "patch-general": "all of G"}
    chosen = table[
        (table["topic"] == CROSS_TOPIC)
        & (table["direction"] == "necessity")
        & table["condition"].isin(list(sets))
    ]
    rows = []
    for _, r in chosen.iterrows():
        rows.append(
            _claim(
                f"3: ceiling: {sets[r['condition']]} restored to M0's values inside M_s "
                "removes part of the cross-topic shift",
                r,
                (r["share"], r["share_lo"], r["share_hi"]),
                rule="holds if the CI of the share of the cross-topic S_ll shift removed lies "
                "above 0 (the most a mitigation holding these neurons at M0 could cut)",
                verdict=interval_verdict(r["share_lo"], r["share_hi"]),
                why=r["why_undefined"] if isinstance(r["why_undefined"], str) else "",
                readout=TEACHER_FORCED.format(direction="necessity"),
            )
        )
    return rows


def claims_table(
    tables: dict[str, pd.DataFrame], headline_n: float = 5, *, ts_kept_margin: float
) -> pd.DataFrame:
    """Each claim of the paper (docs/method.md, "The claims under test") per fine-tuned run:
    the measured figure with its CI, the control's figure, their paired difference, the rule
    the verdict follows and the verdict (`interval_verdict`). `tables` holds the tables made
    (names of TABLE_FILES); a claim whose tables were not all made is left out."""
    settings = dict(headline_n=headline_n, ts_kept_margin=ts_kept_margin)
    rows = []
    for entry in CLAIMS:
        if all(name in tables for name in entry.reads):
            rows += entry.rows(tables, settings)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
