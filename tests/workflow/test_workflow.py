"""The workflow itself: lint, the paper configuration's dry run, and a whole tiny run with its
HTML report (snakemake is run as a user would)."""

import dataclasses
import json
import re
import subprocess

import pandas as pd
import pytest
import yaml
from shipped_configs import extended_run, fake_judge, inhibitft_study_run, run_config  # noqa: F401
from workflow_helpers import (  # noqa: F401
    REPO,
    SNAKEMAKE,
    make_workdir,
    reference_run,
    require_mirror,
    subprocess_env,
    tiny_model_dir,
)

from polneurons import kinds, runs
from polneurons.config import validate_config
from polneurons.neuron_store import inhibited_set
from polneurons.tables.claims import JUDGE, TEACHER_FORCED_LL
from polneurons.tables.common import read_table


def snakemake(*args, cwd=REPO, timeout=600):
    return subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_paper_config_dry_run_lists_every_job_with_gpu_resources_and_no_judge_training(tmp_path):
    proc = snakemake(
        "-n", "--configfile", "configs/paper.yaml", "--config", f"results={tmp_path}/results"
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    models, sources, n_points, draws = 4, 6, 5, 3
    assert int(counts["finetune"]) == models * sources * 2  # vanilla + the control with MLP targets
    # InhibitFT + controls.seeds draws of the random control, each its own run
    assert int(counts["inhibitft"]) == models * sources * n_points * (1 + draws)
    assert int(counts["dump_activations"]) == models * sources * 6
    assert int(counts["patch_generate"]) == models * sources * (2 + draws)
    # G's random patching set and InhibitFT's random sets at every n, and the readout's
    # ceiling: the top n% of G against as many random neurons outside G, at every n
    ceiling = models * sources * n_points * draws
    assert int(counts["random_control"]) == models * sources * (n_points + 1) * draws + ceiling
    # the paper's openai judge is not trained: no job that cannot succeed with it
    assert "train_judge" not in counts and int(counts["judge_table"]) == 1
    assert "classifier.pkl" not in out
    finetune_jobs = re.findall(r"rule finetune:.*?resources: ([^\n]*)", out, re.S)
    assert finetune_jobs and all(
        "gpu=1" in r and "mem_mb=" in r and "runtime=" in r for r in finetune_jobs
    )


def test_embedded_default_dry_run_trains_and_patches_only_what_its_budget_lists(tmp_path):
    mirror = require_mirror()
    proc = snakemake("-n", "--config", f"results={tmp_path}/results", f"data={{mirror: {mirror}}}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # every trained run's output is <results>/<model>/<lean>/<src>/<kind>/train
    trained = set(re.findall(r"^\s+output: \S+/([\w.-]+)/train$", out, re.M))
    assert trained == {"ft", "ift-anchor-n5", "rnd-anchor-n5-s0"}  # the anchored InhibitFT
    restored = set(re.findall(r"^\s+output: \S+/(restore-[\w.]+)/generations\.jsonl$", out, re.M))
    assert restored == {"restore-n5"}  # the training-free mitigation InhibitFT must beat
    patched = set(re.findall(r"^\s+output: \S+/(\w+/patch-[\w-]+)/generations\.jsonl$", out, re.M))
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert config["source_topics"] == ["crime_and_gun"]  # the budget fine-tunes one source topic
    assert patched == {f"crime_and_gun/{kind}" for kind in runs.patch_kinds(config)}
    # G, S_t and G's random control; no ceiling runs, no dose (the CPU study's controls)
    assert patched == {f"crime_and_gun/patch-{c}" for c in ["general", "specific", "random-s0"]}
    # the readout of each, one job per topic, with InhibitFT's ceiling (F_5 against random)
    read = set(re.findall(r"^\s+output: \S+/ft/readout/(\w+)\.csv$", out, re.M))
    assert read == set(config["topics"])
    drawn = set(re.findall(r"^\s+output: \S+/(patch-dose[\w.-]+)/control/neurons\.pt,", out, re.M))
    assert drawn == {"patch-dose5-random-s0"}


@pytest.mark.integration
@pytest.mark.xdist_group("reference")
def test_tiny_run_produces_every_table_figure_and_the_report(reference_run):  # noqa: F811
    results = reference_run.results
    tables = [
        "judge_agreement",
        "stance_shift",
        "ts_cg",
        "loglik_shift",
        "neuron_sets",
        "general_overlap",
        "patching",
        "inhibitft_main",
        "inhibitft_loglik",
        "perplexity",
        "generation_health",
        "generation_health_samples",
        "dose_response",
        "specificity",
        "null_overlap",
        "readout",
        "readout_contrasts",
        "dose_response_readouts",
        "specificity_readout",
    ]
    for name in tables:
        assert (results / "tables" / f"{name}.csv").stat().st_size > 0
        assert (results / "tables" / f"{name}.md").read_text().startswith("# ")
    assert (results / "tables" / "inhibitft_main.tex").read_text().startswith("\\begin{tabular}")
    figures = ["stance_heatmap", "neurons_per_layer", "patching", "ablation", "dose_response"]
    figures += ["dose_response_readouts"]
    for name in figures:
        assert (results / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (results / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    neurons = results / "tiny" / "right" / "crime_and_gun" / "ft" / "neurons"
    assert (neurons / "general.pt").is_file() and (neurons / "specific" / "race.pt").is_file()

    report = reference_run.root / "report.html"
    proc = reference_run.run("--report", str(report))
    assert proc.returncode == 0, proc.output[-3000:]
    html = report.read_text()
    for category in [
        "0. Generation health",
        "1. Stance shift",
        "2. Political neurons",
        "3. Activation patching",
        "4. InhibitFT",
    ]:
        assert category in html
    for name in [*(f"{f}.png" for f in figures), *(f"{t}.csv" for t in tables)]:
        assert name in html, name


@pytest.mark.integration
@pytest.mark.xdist_group("reference")
def test_random_controls_are_pooled_over_draws_and_never_touch_the_treated_set(reference_run):  # noqa: F811
    tables = reference_run.results / "tables"
    for stage, treated in (("patching", "general"), ("inhibitft", "top")):
        controls = pd.read_csv(tables / f"{stage}_controls.csv")
        assert set(controls["draw"]) == {0, 1} and set(controls["treated"]) == {treated}
        assert (controls["overlap_total"] == 0).all()
        assert (controls["unmatched"] <= controls["treated_count"]).all()
    patching = pd.read_csv(tables / "patching.csv")
    random_rows = patching[patching["condition"] == "patch-random"]
    assert len(random_rows) and (random_rows["draws"] == 2).all()
    assert not patching["condition"].str.contains("-s[0-9]", regex=True).any()
    main = pd.read_csv(tables / "inhibitft_main.csv")
    assert (main.loc[main["condition"].str.startswith("rnd-"), "draws"] == 2).all()
    assert "relative_sd" in main.columns


def extended_kinds(work) -> dict:
    """The run kinds the extended run's config makes, at its (first) InhibitFT n and dose."""
    config = run_config(work)
    n, strategy = config["inhibitft"]["n"][0], config["inhibitft"]["strategies"][0]
    return dict(
        config=config,
        n=n,
        ift=kinds.inhibit_kind(strategy, n),
        rnd=kinds.inhibit_kind(strategy, n, draw=0),
        nift=kinds.inhibit_kind(strategy, n, null=True),
        dose=float(config["patching"]["dose"][0]),
    )


@pytest.mark.integration
@pytest.mark.xdist_group("shipped")
def test_training_replicates_train_apart_and_pool_in_the_tables(extended_run):  # noqa: F811
    results, tables = extended_run.results, extended_run.results / "tables"
    run = results / "tiny" / "right" / "crime_and_gun"
    extended = extended_kinds(extended_run)
    ift, rnd = extended["ift"], extended["rnd"]
    assert extended["config"]["training_seeds"] == 2
    adapter = "adapter/adapter_model.safetensors"
    for kind in ("ft", ift, rnd):
        first, second = run / kind / "train" / adapter, run / f"{kind}-t1" / "train" / adapter
        assert first.read_bytes() != second.read_bytes(), kind  # seed + 1: another training
    # a replicate draws no random set of its own and localizes no neurons
    assert not (run / f"{rnd}-t1" / "control").exists()
    assert not (run / "ft-t1" / "neurons").exists()
    tscg = read_table(tables / "ts_cg.csv")
    tscg = tscg[tscg["leaning"] == "right"].set_index("condition")  # the localized leaning
    assert set(tscg.index) == {"ft", "null"}  # the null fine-tune: claim 1's control
    assert tscg.loc["ft", "seeds"] == 2 and "CG_sd" in tscg.columns
    main = pd.read_csv(tables / "inhibitft_main.csv")
    assert not main["condition"].str.contains("-t[0-9]", regex=True).any()
    trained = ~main["condition"].str.startswith("restore-")  # restore acts on replicate 0
    assert (main.loc[trained, "seeds"] == 2).all()
    training = pd.read_csv(tables / "training.csv")
    assert {"ft", "ft-t1", f"{rnd}-t1"} <= set(training["condition"])
    effect = pd.read_csv(tables / "inhibition_effect.csv")
    assert {ift, f"{ift}-t1"} <= set(effect["condition"])


@pytest.mark.integration
@pytest.mark.xdist_group("shipped")
def test_the_controls_beyond_the_paper_each_reach_a_table_and_a_claim(extended_run):  # noqa: F811
    results, tables = extended_run.results, extended_run.results / "tables"
    run = results / "tiny" / "right" / "crime_and_gun"
    extended = extended_kinds(extended_run)
    config, nift, dose = extended["config"], extended["nift"], extended["dose"]
    # dose: the top x% of G against random draws outside all of G
    table = pd.read_csv(tables / "dose_response.csv")
    assert {"G", "random", "G_null"} <= set(table["arm"])
    assert set(table.loc[table["arm"] == "G", "dose"]) == {dose, 100.0}
    if "all" in config["patching"]["conditions"]:
        assert "all (ceiling)" in set(table["arm"])
    top = table[(table["arm"] == "G") & (table["dose"] == dose)]["neurons"].item()
    whole = table[(table["arm"] == "G") & (table["dose"] == 100.0)]["neurons"].item()
    assert 0 < top < whole
    # the same curve in both readouts: every dose of G and of random read out in each direction
    both = read_table(tables / "dose_response_readouts.csv")
    readouts = {"judge", "teacher-forced, sufficiency", "teacher-forced, necessity"}
    for arm in ("G", "random"):
        points = both[both["arm"] == arm]
        assert set(points["readout"]) == readouts
        assert points.groupby("readout")["dose"].apply(set).map(sorted).map(tuple).nunique() == 1
    controls = pd.read_csv(tables / "patching_controls.csv")
    assert set(controls["treated"]) == {"general", "top"} and (controls["overlap_total"] == 0).all()
    # specificity: S_t on every other topic, one row per topic
    crossed = [json.loads(line) for line in (run / "patch-crossed" / "ratings.jsonl").open()]
    assert all(row["patched_topic"] != row["test_set"] for row in crossed)
    specific = pd.read_csv(tables / "specificity.csv")
    assert sorted(specific["topic"]) == sorted(config["topics"])
    # the null fine-tune: neutral answers, as many as the political run's, and G_null
    null_log = json.loads((run / "null" / "train" / "train_log.json").read_text())
    ft_log = json.loads((run / "ft" / "train" / "train_log.json").read_text())
    assert null_log["n_examples"] == ft_log["n_examples"] and null_log["config"] == ft_log["config"]
    assert null_log["examples_from"] in ("topic", "pooled")
    overlap = pd.read_csv(tables / "null_overlap.csv")
    assert len(overlap) == 1 and 0 <= overlap["jaccard"].item() <= 1
    # the null control: InhibitFT on F_n of G_null, trained in each replicate, paired with InhibitFT
    assert (run / nift / "train").is_dir() and (run / f"{nift}-t1" / "train").is_dir()
    inhibited = json.loads((run / nift / "train" / "train_log.json").read_text())["inhibit"]
    spec = dict(n=extended["n"], of="general", site=inhibited["site"])
    f_n = inhibited_set(run / "ft" / "neurons", **spec)
    f_null = inhibited_set(run / "ft" / "neurons", **spec, from_dir=run / "null" / "neurons")
    assert len(f_null) == len(f_n) > 0  # as many neurons as F_n, the top of G_null
    by_layer = {str(layer): len(index) for layer, index in f_null.by_layer().items()}
    assert inhibited["neurons_per_layer"] == by_layer
    main = pd.read_csv(tables / "inhibitft_main.csv")
    assert (main.loc[main["condition"] == nift, "seeds"] == 2).all()
    versus = pd.read_csv(tables / "inhibitft_vs_random.csv")
    assert set(versus["control"]) == {kinds.split_draw(extended["rnd"])[0], nift}
    cuts = read_table(tables / "inhibitft_loglik_cuts.csv")  # claim 3 without a judge
    assert set(cuts.loc[cuts["condition"] == extended["ift"], "versus"]) == set(versus["control"])
    effect = pd.read_csv(tables / "inhibition_effect.csv").set_index(["condition", "set"])
    assert effect.loc[(nift, "inhibited"), "n_neurons"] == len(f_null)
    claims = pd.read_csv(tables / "claims.csv")["claim"]
    other = next(t for t in config["topics"] if t != "crime_and_gun")
    top_claim = f"top {kinds.format_n(dose)}% of G"
    for claim in ("than null_general", top_claim, f"moves {other} more than", "than on G_null"):
        assert claims.str.contains(claim).any(), claim
    # claim 1 against the null fine-tune, judged like the vanilla one
    assert (run / "null" / "ratings.jsonl").is_file()
    versus_null = read_table(tables / "ts_cg_versus_null.csv")
    assert len(versus_null) == 1 and versus_null["control"].item() == "null"
    # and without a judge: each training replicate of the vanilla fine-tune against the null's
    versus_ll = read_table(tables / "loglik_versus_null.csv")
    assert len(versus_ll) == config["training_seeds"] and set(versus_ll["control"]) == {"null"}
    claim_rows = pd.read_csv(tables / "claims.csv")
    beyond = claim_rows[claim_rows["claim"].str.match(r"1: .* beyond a fine-tune without politics")]
    assert set(beyond["readout"]) == {JUDGE, TEACHER_FORCED_LL}


@pytest.mark.integration
def test_switching_the_data_mirror_leaves_finished_outputs_up_to_date(tmp_path, tiny_model_dir):  # noqa: F811
    work = make_workdir(tmp_path / "work", tiny_model_dir)
    target = str(work.results / "tiny" / "right" / "crime_and_gun" / "ft" / "train")
    proc = work.run(target)  # download, prepare the model, one protected fine-tune (seconds)
    assert proc.returncode == 0, work.explain(proc)
    other = tmp_path / "elsewhere"
    other.symlink_to(work.mirror, target_is_directory=True)
    for mirror in (other, "null"):  # another mirror path; no mirror (download from base_url)
        moved = dataclasses.replace(work, mirror=mirror)
        proc = moved.run("-n", target)
        assert proc.returncode == 0, moved.explain(proc)
        assert "Nothing to be done" in proc.output, proc.output[-3000:]


@pytest.mark.integration
@pytest.mark.xdist_group("shipped")
def test_the_inhibitft_study_anchors_restores_and_reads_claim_3_both_ways(inhibitft_study_run):  # noqa: F811
    results, tables = inhibitft_study_run.results, inhibitft_study_run.results / "tables"
    run = results / "tiny" / "right" / "crime_and_gun"
    config = run_config(inhibitft_study_run)
    n = config["inhibitft"]["n"][0]
    ift, restore = kinds.inhibit_kind("anchor", n), kinds.restore_kind(n)
    assert config["inhibitft"]["strategies"] == ["anchor"]
    log = json.loads((run / ift / "train" / "train_log.json").read_text())
    assert log["inhibit"]["anchor_weight"] == config["inhibitft"]["anchor_weight"]
    assert all("anchor" in step for step in log["steps"])  # the term, logged per step
    # restore: the vanilla control generates with F_n restored, judged like an arm; no training
    assert (run / restore / "ratings.jsonl").is_file() and not (run / restore / "train").exists()
    versus = pd.read_csv(tables / "inhibitft_vs_random.csv")
    assert set(versus.loc[versus["treated"] == ift, "control"]) == set(
        kinds.inhibitft_controls(ift)
    )
    effect = set(pd.read_csv(tables / "inhibition_effect.csv")["condition"])
    assert ift in effect and restore not in effect
    cuts = read_table(tables / "inhibitft_loglik_cuts.csv")
    assert set(cuts.loc[cuts["condition"] == ift, "versus"]) == set(
        kinds.inhibitft_controls(ift)
    ) - {restore}
    claims = read_table(tables / "claims.csv")
    assert claims["claim"].str.startswith("3: ceiling: F_").any()
    assert (claims["readout"] == "teacher-forced").any()
