# Paths, wildcard constraints, resources and the param dicts the rules share. The config is
# already validated; what runs (every run of each role, each table's inputs) is planned by
# polneurons.plan.Plan, and only turned into paths here.
from polneurons.data import TOPICS, FILES
from polneurons.config import (
    data_settings,
    inhibitft_finetune,
    localization_recipe,
    pool_sizes,
)
from polneurons import kinds, runs
from polneurons.plan import Plan
from polneurons.specs import control_spec, inhibit_spec

PLAN = Plan(config)
RES = config["results"]
MODELS = PLAN.models
SPECS = config["model_registry"]
TEST_SETS = list(config["topics"]) + list(config["extra_sets"])
IFT = config["inhibitft"]
CONTROL_KIND = PLAN.control_kind
alt = runs.alternatives


# config["data"] without where the files come from: a param only of what changes a result
DATA = data_settings(config["data"])
# the per-topic sizes of every data pool (training, log-likelihood, perplexity, localization,
# judge): every rule that reads a pool gets the same, so all cut the same disjoint pools
POOLS = pool_sizes(config)
# what each PNLAC step reads of `neurons` (a change of the ranking does not redo the dumps)
DUMP_SETTINGS = {
    key: config["neurons"][key]
    for key in ("site", "batch_size", "shard_size", "raw_tokens", "tokens")
}
LOCALIZE_SETTINGS = localization_recipe(config)


wildcard_constraints:
    model=alt(MODELS),
    lean=alt(config["leanings"]),
    src=alt(config["source_topics"]),
    topic=alt(config["topics"]),
    kind=kinds.TRAIN_KIND,
    run=runs.run_pattern(config),


def model_record(wc):
    return f"{RES}/models/{wc.model}/model.json"


def adapter_of(wc):
    """The trained run a generation uses; none for the base model."""
    if wc.run == "base":
        return []
    return f"{RES}/{wc.model}/{wc.run}/train"


def neurons_of(kind):
    """The localized neurons a run of this kind takes: G_null's folder (the null fine-tune's)
    for the kinds of G_null, the vanilla run's otherwise (kinds.Kind.localized_on)."""

    def inputs(wc):
        localized = kinds.parse_kind(kind(wc)).localized_on
        return f"{RES}/{wc.model}/{wc.lean}/{wc.src}/{localized}/neurons"

    return inputs


def control_of(kind):
    """The drawn random-control neurons a run of this kind uses (none for other kinds); every
    training replicate of a draw uses the draw's one set."""

    def inputs(wc):
        parsed = kinds.parse_kind(kind(wc))
        if not parsed.is_control:
            return []
        return f"{RES}/{wc.model}/{wc.lean}/{wc.src}/{parsed.first}/control/neurons.pt"

    return inputs


# the folder the pinned downloads live in (rule download_data); rules reading them also take
# its output files as input, which orders them after it
DATA_ROOT = f"{RES}/data/raw"


def raw(rel):
    return f"{DATA_ROOT}/{rel}"


def data_root(wc, input):
    """DATA_ROOT as this job sees it (remote storage may prefix it): the folder of the first
    pinned file it takes as input, less that file's path inside the pinned tree."""
    depth = len(Path(next(iter(FILES))).parts)
    return str(Path(input.files[0]).parents[depth - 1])


# Params shared by every table rule that resamples (bootstrap settings, the seed) and by those
# that read the stance of every test set.
BOOTSTRAP_PARAMS = dict(scoring=config["scoring"], seed=config["seed"])
TEST_SET_PARAMS = dict(topics=config["topics"], extra_sets=config["extra_sets"])
# Params shared by kind of job, one dict each (each rule adds only its own params);
# every job that loads a model; that uses a trained run at inference; that answers the
# evaluation prompts; that trains.
MODEL_PARAMS = dict(
    root=data_root,
    prompt_format=config["prompt_format"],
    device=config["device"],
    dtype=config["dtype"],
)
RUN_PARAMS = dict(**MODEL_PARAMS, adapter_dtype=config["inference_adapter_dtype"])
ANSWER_PARAMS = dict(
    **RUN_PARAMS,
    test_sets=TEST_SETS,
    eval_prompts=config["data"]["eval_prompts"],
    generation=config["generation"],
    topic_names=config["prompt_topic_names"],
)
TRAIN_PARAMS = dict(
    **MODEL_PARAMS,
    data=DATA,
    pools=POOLS,
    seed=config["seed"],
    topics=config["topics"],
)


def params_b(wc):
    return SPECS[wc.model]["params_b"]


def mem_mb(wc, attempt):
    r = config["resources"]
    return int(
        (r["mem_mb_base"] + r["mem_mb_per_b_params"] * params_b(wc))
        * (1 + 0.5 * (attempt - 1))
    )


def runtime(wc, attempt):
    r = config["resources"]
    return int((r["runtime_base"] + r["runtime_per_b_params"] * params_b(wc)) * attempt)


def gpu_site(gpu):
    """Site resources of a job asking for `gpu` GPUs (partition, GPU model); none without."""
    r = config["resources"]
    site = {"slurm_partition": r["gpu_partition"], "gpu_model": r["gpu_model"]}
    return {k: v for k, v in site.items() if v is not None and gpu > 0}


MODEL_JOB = dict(
    gpu=config["resources"]["gpu"],
    mem_mb=mem_mb,
    runtime=runtime,
    **gpu_site(config["resources"]["gpu"]),
)
# Rules that need the network run where snakemake runs (compute nodes may have none).
NETWORK_LOCAL = config["resources"]["network_rules_local"]
JUDGE_GPU = config["resources"]["gpu"] if config["judge"]["backend"] == "hf" else 0
JUDGE_LOCAL = NETWORK_LOCAL and config["judge"]["backend"] == "openai"


# Only the classifier judge is trained (rule train_judge, on its own pool); the openai and hf
# judges are used as they are, and train_judge is then not in the DAG (docs/method.md, "Stance").
JUDGE_TRAINED = config["judge"]["backend"] == "classifier"
CLASSIFIER = f"{RES}/judge/classifier.pkl"
CLASSIFIER_AGREEMENT = f"{RES}/judge/agreement.json"
OPENAI_CACHE = f"{RES}/judge/openai_cache.jsonl"


def judge_inputs(wc):
    inputs = {"generations": f"{RES}/{wc.model}/{wc.run}/generations.jsonl"}
    if JUDGE_TRAINED:
        inputs["classifier"] = CLASSIFIER
    return inputs


def judge_table_inputs(wc):
    """The judge table reads every rating the workflow made and, for the classifier judge, its
    held-out agreement with GPT-4's labels, the judge itself and each model's record (its
    tokenizer cuts the held-out answers to generation.max_new_tokens tokens)."""
    inputs = {"ratings": judged_runs("ratings.jsonl")}
    if JUDGE_TRAINED:
        inputs["agreement"] = CLASSIFIER_AGREEMENT
        inputs["classifier"] = CLASSIFIER
        inputs["models"] = [f"{RES}/models/{model}/model.json" for model in MODELS]
    return inputs


def paths(name, run_ids):
    """A file of each of these runs (``<model>/<run>`` ids of PLAN)."""
    return [f"{RES}/{run}/{name}" for run in run_ids]


def control_reports(kinds, sources=None):
    """The draw reports of the random controls among these run kinds (one per draw)."""
    return paths("control/report.json", PLAN.control_draws(kinds, sources))


def inhibitft_runs(name, kinds=None):
    """A file of the vanilla control and InhibitFT runs (InhibitFT's source topics) and base."""
    return paths(name, PLAN.inhibitft_runs(kinds))


def judged_runs(name):
    """A file of every run the workflow judges (vanilla, patched, InhibitFT, base), once each."""
    return paths(name, PLAN.judged())


def trained_runs(name):
    """A file of every trained run, once: vanilla, null, and InhibitFT's control and arms."""
    return paths(name, PLAN.trained())


def claims_inputs(wc):
    """The tables the claims table reads: those of every stage that runs (PLAN.claim_tables)."""
    return {key: f"{RES}/tables/{table}" for key, table in PLAN.claim_tables().items()}


REPORT_CAPTIONS = Path(workflow.basedir) / "workflow" / "report"


def report_item(path, category, subcategory, caption):
    # Snakemake reads a caption only when --report runs: a missing one fails here, at parse time
    if not (REPORT_CAPTIONS / caption).is_file():
        raise ValueError(
            f"no report caption workflow/report/{caption} for {path}: a table or figure "
            "marked for the report needs one"
        )
    return report(
        path, category=category, subcategory=subcategory, caption=f"../report/{caption}"
    )


def table_paths(name, key=None, exts=("csv", "md"), category=None):
    """Named outputs of one table: {csv: ..., md: ...} or {<key>_csv: ..., <key>_md: ...}; with a
    report category, the CSV goes into the HTML report with workflow/report/<name>.rst.
    """
    paths = {
        f"{key}_{ext}" if key else ext: f"{RES}/tables/{name}.{ext}" for ext in exts
    }
    if category:
        csv = f"{key}_csv" if key else "csv"
        paths[csv] = report_item(paths[csv], category, "tables", f"{name}.rst")
    return paths


def figure_paths(name):
    return {ext: f"{RES}/figures/{name}.{ext}" for ext in ("png", "pdf")}


def figure_outputs(name, category, subcategory, key=None):
    """Named outputs of one figure: {png: ..., pdf: ...} or {<key>_png: ..., <key>_pdf: ...}; the
    PNG goes into the HTML report with workflow/report/<name>.rst.
    """
    paths = figure_paths(name)
    prefix = f"{key}_" if key else ""
    return {
        f"{prefix}png": report_item(paths["png"], category, subcategory, f"{name}.rst"),
        f"{prefix}pdf": paths["pdf"],
    }


def inhibition_effect_inputs(wc):
    """Per InhibitFT run: its dump and its vanilla control's on the source topic, the neurons
    of the source's vanilla run (G), those F_n is taken from (G's; G_null's for the null
    control) and, for a random control, its drawn set (flat, in run order). A training
    replicate is compared with the same replicate of the vanilla control.
    """
    inputs = {
        "run": [],
        "vanilla": [],
        "neurons": [],
        "inhibited_from": [],
        "control": [],
    }
    for m, lean, src, kind in PLAN.inhibition_effect_runs():
        run, parsed = f"{RES}/{m}/{lean}/{src}", kinds.parse_kind(kind)
        vanilla = kinds.with_replicate(CONTROL_KIND, parsed.replicate)
        inputs["run"].append(f"{run}/{kind}/moved/{src}")
        inputs["vanilla"].append(f"{run}/{vanilla}/moved/{src}")
        inputs["neurons"].append(f"{run}/ft/neurons")
        inputs["inhibited_from"].append(f"{run}/{parsed.localized_on}/neurons")
        if parsed.is_control:
            inputs["control"].append(f"{run}/{parsed.first}/control/neurons.pt")
    return inputs


def final_outputs():
    outputs = [
        f"{RES}/tables/judge_agreement.csv",
        *rules.health_table.output,
        *rules.stance_tables.output,
        *rules.neuron_tables.output,
        *rules.claims_table.output,
        *rules.training_tables.output,
    ]
    if PLAN.patching:
        outputs += list(rules.patching_tables.output)
    if PLAN.readout:
        outputs += list(rules.readout_tables.output)
    if PLAN.inhibitft:
        outputs += [*rules.inhibitft_tables.output, *inhibitft_runs("scores.csv")]
        outputs += paths("scores.csv", PLAN.restore_runs())
        outputs += list(rules.inhibition_effect.output)
    return outputs


def readout_inputs(wc):
    """The fine-tuned run, and the neuron sets of every patching kind the readout scores: the
    localized folders they come from (neurons_<localized>) and each drawn control's set
    (kinds.readout_control_input)."""
    run = f"{RES}/{wc.model}/{wc.lean}/{wc.src}"
    inputs = {
        "model": model_record(wc),
        "files": rules.download_data.output.files,
        "adapter": f"{run}/ft/train",
    }
    if PLAN.crossed_readout:  # S_t of every other topic, from the vanilla run's neurons
        inputs["neurons_ft"] = f"{run}/ft/neurons"
    for kind in PLAN.readout_kinds:
        parsed = kinds.parse_kind(kind)
        inputs[f"neurons_{parsed.localized_on}"] = (
            f"{run}/{parsed.localized_on}/neurons"
        )
        if parsed.is_control:
            inputs[kinds.readout_control_input(kind)] = (
                f"{run}/{parsed.first}/control/neurons.pt"
            )
    return inputs
