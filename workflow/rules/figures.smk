# Tables and figures of METHOD 9, gathered in the Snakemake report.
localrules:
    judge_table,
    stance_tables,
    neuron_tables,
    patching_tables,
    inhibitft_tables,


def runs_of(kinds, model=None):
    models = [model] if model else MODELS
    return [f"{m}/{r}" for m in models for r in run_ids(kinds)]


def per_run(name, kinds, with_base=True):
    runs = runs_of(kinds) + ([f"{m}/base" for m in MODELS] if with_base else [])
    return [f"{RES}/{run}/{name}" for run in runs]


def report_item(path, category, subcategory, caption):
    return report(path, category=category, subcategory=subcategory, caption=f"../report/{caption}")


TABLE = lambda name, exts=("csv", "md"): {ext: f"{RES}/tables/{name}.{ext}" for ext in exts}
FIGURE = lambda name: {ext: f"{RES}/figures/{name}.{ext}" for ext in ("png", "pdf")}


rule judge_table:
    input:
        agreement=rules.train_judge.output.agreement,
    output:
        **TABLE("judge_agreement"),
    log:
        f"{RES}/logs/judge_table.log",
    script:
        "../../scripts/judge_table.py"


rule stance_tables:
    input:
        ratings=per_run("ratings.jsonl", ["ft"]),
        loglik=per_run("loglik.csv", ["ft"]),
    output:
        **{f"shift_{k}": v for k, v in TABLE("stance_shift").items()},
        **{f"tscg_{k}": v for k, v in TABLE("ts_cg").items()},
        **{f"loglik_{k}": v for k, v in TABLE("loglik_shift").items()},
        heatmap_png=report_item(FIGURE("stance_heatmap")["png"], "1. Stance shift", "heatmap", "stance_heatmap.rst"),
        heatmap_pdf=FIGURE("stance_heatmap")["pdf"],
    params:
        results=RES,
        topics=config["topics"],
        extra_sets=config["extra_sets"],
        scoring=config["scoring"],
        seed=config["seed"],
    log:
        f"{RES}/logs/stance_tables.log",
    script:
        "../../scripts/stance_tables.py"


rule neuron_tables:
    input:
        neurons=[f"{RES}/{r}/neurons" for r in runs_of(["ft"])],
    output:
        **{f"sets_{k}": v for k, v in TABLE("neuron_sets").items()},
        **{f"overlap_{k}": v for k, v in TABLE("general_overlap").items()},
        layers_png=report_item(FIGURE("neurons_per_layer")["png"], "2. Political neurons", "per layer", "neurons_per_layer.rst"),
        layers_pdf=FIGURE("neurons_per_layer")["pdf"],
    params:
        results=RES,
    log:
        f"{RES}/logs/neuron_tables.log",
    script:
        "../../scripts/neuron_tables.py"


rule patching_tables:
    input:
        ratings=per_run("ratings.jsonl", ["ft"] + patch_kinds()),
    output:
        **TABLE("patching"),
        png=report_item(FIGURE("patching")["png"], "3. Activation patching", "stance", "patching.rst"),
        pdf=FIGURE("patching")["pdf"],
    params:
        results=RES,
        conditions=config["patching"]["conditions"],
        scoring=config["scoring"],
        seed=config["seed"],
    log:
        f"{RES}/logs/patching_tables.log",
    script:
        "../../scripts/patching_tables.py"


rule inhibitft_tables:
    input:
        ratings=per_run("ratings.jsonl", [k for k in train_kinds() if k != "ft" or CONTROL_KIND == "ft"]),
        loglik=per_run("loglik.csv", [k for k in train_kinds() if k != "ft" or CONTROL_KIND == "ft"]),
        perplexity=per_run("perplexity.json", ["ft", CONTROL_KIND] + [k for k in train_kinds() if k.startswith("ift")]),
    output:
        **TABLE("inhibitft_main", ("csv", "md", "tex")),
        **{f"ppl_{k}": v for k, v in TABLE("perplexity").items()},
        **{f"loglik_{k}": v for k, v in TABLE("inhibitft_loglik").items()},
        png=report_item(FIGURE("ablation")["png"], "4. InhibitFT", "ablation", "ablation.rst"),
        pdf=FIGURE("ablation")["pdf"],
    params:
        results=RES,
        topics=config["topics"],
        extra_sets=config["extra_sets"],
        control=CONTROL_KIND,
        strategies=IFT["strategies"],
        n=IFT["n"],
        random_control=IFT["random_control"],
        scoring=config["scoring"],
        seed=config["seed"],
    log:
        f"{RES}/logs/inhibitft_tables.log",
    script:
        "../../scripts/inhibitft_tables.py"


def final_outputs():
    outputs = [rules.judge_table.output.csv, *rules.stance_tables.output, *rules.neuron_tables.output]
    if config["patching"]["enabled"]:
        outputs += list(rules.patching_tables.output)
    if IFT["enabled"]:
        outputs += list(rules.inhibitft_tables.output)
    return outputs
