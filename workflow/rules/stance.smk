# Stance measurement (method.md: Stance): greedy generation, judging, the score S, the judge-free S_ll.
GENERATED_RUN_RE = runs.run_pattern(config, kinds.TRAIN_KIND)


rule generate:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=adapter_of,
    output:
        generations=f"{RES}/{{model}}/{{run}}/generations.jsonl",
    log:
        f"{RES}/logs/generate/{{model}}/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/generate/{{model}}/{{run}}.tsv"
    wildcard_constraints:
        run=GENERATED_RUN_RE,
    # the stance shift (heatmap, TS, CG) first: it needs no neurons
    priority: 10
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **ANSWER_PARAMS,
    script:
        "../../scripts/generate.py"


rule judge:
    input:
        unpack(judge_inputs),
        files=rules.download_data.output.files,
    output:
        ratings=f"{RES}/{{model}}/{{run}}/ratings.jsonl",
        health=f"{RES}/{{model}}/{{run}}/health.json",
    log:
        f"{RES}/logs/judge/{{model}}/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/judge/{{model}}/{{run}}.tsv"
    priority: 10
    localrule: JUDGE_LOCAL
    conda:
        "../../envs/polneurons.yaml"
    threads: 1
    resources:
        **gpu_site(JUDGE_GPU),
        mem_mb=4000,
        runtime=120,
        gpu=JUDGE_GPU,
        api_slots=1 if config["judge"]["backend"] == "openai" else 0,
    params:
        root=data_root,
        judge=config["judge"],
        topic_names=config["prompt_topic_names"],
        cache=OPENAI_CACHE,
        health=config["health"],
        max_new_tokens=config["generation"]["max_new_tokens"],
    script:
        "../../scripts/judge.py"


rule score:
    input:
        ratings=rules.judge.output.ratings,
    output:
        scores=f"{RES}/{{model}}/{{run}}/scores.csv",
    log:
        f"{RES}/logs/score/{{model}}/{{run}}.log",
    priority: 10
    localrule: True
    conda:
        "../../envs/polneurons.yaml"
    params:
        **BOOTSTRAP_PARAMS,
    script:
        "../../scripts/score.py"


# Judge-free scores of one run, from one model load: the paired log-likelihood stance S_ll on
# held-out IdeoINST pairs (method.md: Stance) and perplexity on held-out neutral answers (method.md: InhibitFT).
rule score_likelihood:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=adapter_of,
    output:
        loglik=f"{RES}/{{model}}/{{run}}/loglik.csv",
        perplexity=f"{RES}/{{model}}/{{run}}/perplexity.json",
    log:
        f"{RES}/logs/score_likelihood/{{model}}/{{run}}.log",
    benchmark:
        f"{RES}/benchmarks/score_likelihood/{{model}}/{{run}}.tsv"
    wildcard_constraints:
        run=GENERATED_RUN_RE,
    priority: 10
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **RUN_PARAMS,
        topics=config["topics"],
        pools=POOLS,
        perplexity=config["perplexity"],
        seed=config["seed"],
        batch_size=config["generation"]["batch_size"],
    script:
        "../../scripts/score_likelihood.py"
