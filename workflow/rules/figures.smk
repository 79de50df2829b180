# Tables and figures of method.md: Outputs, gathered in the Snakemake report.
localrules:
    judge_table,
    health_table,
    stance_tables,
    neuron_tables,
    patching_tables,
    inhibitft_tables,
    claims_table,
    training_tables,
    inhibition_effect,


rule judge_table:
    input:
        unpack(judge_table_inputs),
    output:
        **table_paths("judge_agreement", category="0. Judge"),
    log:
        f"{RES}/logs/judge_table.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        judge=config["judge"],
        cache=OPENAI_CACHE,
        models=MODELS,
        max_new_tokens=config["generation"]["max_new_tokens"],
    script:
        "../../scripts/judge_table.py"


rule health_table:
    input:
        health=judged_runs("health.json"),
    output:
        **table_paths("generation_health", category="0. Generation health"),
        **table_paths(
            "generation_health_samples", "samples", category="0. Generation health"
        ),
    log:
        f"{RES}/logs/health_table.log",
    conda:
        "../../envs/polneurons.yaml"
    script:
        "../../scripts/health_table.py"


rule stance_tables:
    input:
        ratings=paths("ratings.jsonl", PLAN.stance_runs()),
        loglik=paths("loglik.csv", PLAN.stance_runs()),
    output:
        **table_paths("stance_shift", "shift", category="1. Stance shift"),
        **table_paths("ts_cg", "tscg", category="1. Stance shift"),
        **table_paths("ts_cg_versus_null", "null", category="1. Stance shift"),
        **table_paths("loglik_versus_null", "null_ll", category="1. Stance shift"),
        **table_paths("loglik_shift", "loglik", category="1. Stance shift"),
        **figure_outputs("stance_heatmap", "1. Stance shift", "heatmap", key="heatmap"),
    log:
        f"{RES}/logs/stance_tables.log",
    priority: 10
    conda:
        "../../envs/polneurons.yaml"
    params:
        **TEST_SET_PARAMS,
        **BOOTSTRAP_PARAMS,
    script:
        "../../scripts/stance_tables.py"


rule neuron_tables:
    input:
        neurons=paths("neurons", PLAN.localized()),
        null=paths("neurons", PLAN.localized(PLAN.null_kinds)),
        null_train=paths("train", PLAN.localized(PLAN.null_kinds)),
    output:
        **table_paths("neuron_sets", "sets", category="2. Political neurons"),
        **table_paths("null_overlap", "null", category="2. Political neurons"),
        **table_paths("general_overlap", "overlap", category="2. Political neurons"),
        **figure_outputs(
            "neurons_per_layer", "2. Political neurons", "per layer", key="layers"
        ),
    log:
        f"{RES}/logs/neuron_tables.log",
    conda:
        "../../envs/polneurons.yaml"
    script:
        "../../scripts/neuron_tables.py"


rule patching_tables:
    input:
        ratings=paths("ratings.jsonl", PLAN.patching_runs()),
        crossed=paths("ratings.jsonl", PLAN.crossed_runs()),
        controls=control_reports(PLAN.patch_kinds, PLAN.patch_sources),
    output:
        **table_paths("patching", category="3. Activation patching"),
        **table_paths("patching_controls", "controls"),
        **table_paths(
            "patching_contrasts", "contrasts", category="3. Activation patching"
        ),
        **table_paths("dose_response", "dose", category="3. Activation patching"),
        **table_paths("specificity", "specificity", category="3. Activation patching"),
        **figure_outputs("patching", "3. Activation patching", "stance"),
        **figure_outputs(
            "dose_response", "3. Activation patching", "dose-response", key="dose"
        ),
    log:
        f"{RES}/logs/patching_tables.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        **BOOTSTRAP_PARAMS,
        conditions=config["patching"]["conditions"],
    script:
        "../../scripts/patching_tables.py"


rule readout_tables:
    input:
        readouts=[f"{RES}/{file}" for file in PLAN.readout_files()],
        dose=rules.patching_tables.output.dose_csv,
    output:
        **table_paths("readout", category="3. Activation patching"),
        **table_paths(
            "readout_contrasts", "contrasts", category="3. Activation patching"
        ),
        **table_paths(
            "dose_response_readouts", "dose", category="3. Activation patching"
        ),
        **table_paths(
            "specificity_readout", "specificity", category="3. Activation patching"
        ),
        **figure_outputs(
            "dose_response_readouts",
            "3. Activation patching",
            "dose-response, both readouts",
            key="dose",
        ),
    log:
        f"{RES}/logs/readout_tables.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        **BOOTSTRAP_PARAMS,
    script:
        "../../scripts/readout_tables.py"


rule inhibitft_tables:
    input:
        ratings=inhibitft_runs("ratings.jsonl")
        + paths("ratings.jsonl", PLAN.restore_runs()),
        loglik=inhibitft_runs("loglik.csv"),
        perplexity=inhibitft_runs("perplexity.json", PLAN.inhibitft_arms()),
        controls=control_reports(PLAN.inhibitft_kinds, PLAN.inhibitft_sources),
    output:
        **table_paths(
            "inhibitft_main", exts=("csv", "md", "tex"), category="4. InhibitFT"
        ),
        **table_paths("perplexity", "ppl", category="4. InhibitFT"),
        **table_paths("inhibitft_loglik", "loglik", category="4. InhibitFT"),
        **table_paths("inhibitft_loglik_cuts", "cuts", category="4. InhibitFT"),
        **table_paths("inhibitft_controls", "controls"),
        **table_paths("inhibitft_vs_random", "versus", category="4. InhibitFT"),
        **figure_outputs("ablation", "4. InhibitFT", "ablation"),
    log:
        f"{RES}/logs/inhibitft_tables.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        **TEST_SET_PARAMS,
        **BOOTSTRAP_PARAMS,
        control=CONTROL_KIND,
        strategies=IFT["strategies"],
        n=IFT["n"],
        random_control=IFT["random_control"],
    script:
        "../../scripts/inhibitft_tables.py"


rule claims_table:
    input:
        unpack(claims_inputs),
    output:
        **table_paths("claims", category="5. Claims"),
    log:
        f"{RES}/logs/claims_table.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        headline_n=IFT["n"][0],
        ts_kept_margin=config["scoring"]["ts_kept_margin"],
        recipe="/".join(
            [*LOCALIZE_SETTINGS.values(), config["neurons"]["localize_prompts"]]
        ),
    script:
        "../../scripts/claims_table.py"


rule training_tables:
    input:
        train=trained_runs("train"),
    output:
        **table_paths("training", category="1. Stance shift"),
        **figure_outputs("training_loss", "1. Stance shift", "training"),
    log:
        f"{RES}/logs/training_tables.log",
    conda:
        "../../envs/polneurons.yaml"
    script:
        "../../scripts/training_tables.py"


rule inhibition_effect:
    input:
        unpack(inhibition_effect_inputs),
    output:
        **table_paths("inhibition_effect", category="4. InhibitFT"),
    log:
        f"{RES}/logs/inhibition_effect.log",
    conda:
        "../../envs/polneurons.yaml"
    params:
        runs=PLAN.inhibition_effect_runs(),
        site=config["neurons"]["site"],
        of=IFT["of"],
    script:
        "../../scripts/inhibition_effect.py"
