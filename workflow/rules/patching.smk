# Activation patching (method.md: Activation patching): lockstep generation, the base model picks every token.


rule patch_generate:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/train",
        neurons=neurons_of(lambda wc: kinds.patch_kind(wc.condition)),
        control=control_of(lambda wc: kinds.patch_kind(wc.condition)),
    output:
        generations=f"{RES}/{{model}}/{{lean}}/{{src}}/patch-{{condition}}/generations.jsonl",
    log:
        f"{RES}/logs/patch_generate/{{model}}/{{lean}}/{{src}}/{{condition}}.log",
    benchmark:
        f"{RES}/benchmarks/patch_generate/{{model}}/{{lean}}/{{src}}/{{condition}}.tsv"
    wildcard_constraints:
        condition=kinds.PATCH_CONDITION,
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **ANSWER_PARAMS,
        topics=config["topics"],
        site=config["neurons"]["site"],
        seed=config["seed"],
    script:
        "../../scripts/patch_generate.py"


# The training-free mitigation (method.md: InhibitFT, restore): InhibitFT's vanilla control
# generates with F_n restored to M0's values (lockstep, the necessity direction), judged like an
# InhibitFT arm.
rule restore_generate:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/{CONTROL_KIND}/train",
        neurons=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/neurons",
    output:
        generations=f"{RES}/{{model}}/{{lean}}/{{src}}/restore-n{{n}}/generations.jsonl",
    log:
        f"{RES}/logs/restore_generate/{{model}}/{{lean}}/{{src}}/n{{n}}.log",
    benchmark:
        f"{RES}/benchmarks/restore_generate/{{model}}/{{lean}}/{{src}}/n{{n}}.tsv"
    wildcard_constraints:
        n=r"[0-9]+(?:\.[0-9]+)?",
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **ANSWER_PARAMS,
        of=IFT["of"],
        site=config["neurons"]["site"],
        seed=config["seed"],
    script:
        "../../scripts/restore_generate.py"


# The teacher-forced causal readout (method.md: Teacher-forced readout): every patched set,
# both directions, scored on one topic's held-out readout pairs instead of generated and judged
# (one job per topic: nothing is recomputed between them, and they run side by side).
rule readout:
    input:
        unpack(readout_inputs),
    output:
        readout=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/readout/{{topic}}.csv",
    log:
        f"{RES}/logs/readout/{{model}}/{{lean}}/{{src}}/{{topic}}.log",
    benchmark:
        f"{RES}/benchmarks/readout/{{model}}/{{lean}}/{{src}}/{{topic}}.tsv"
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **RUN_PARAMS,
        pools=POOLS,
        seed=config["seed"],
        site=config["neurons"]["site"],
        kinds=PLAN.readout_kinds,
        crossed_topics=config["topics"] if PLAN.crossed_readout else [],
        draws=config["controls"]["seeds"],
        batch_size=config["patching"]["readout_batch_size"],
        answer_tokens=config["patching"]["readout_answer_tokens"],
    script:
        "../../scripts/readout.py"
