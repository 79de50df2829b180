# Activation patching (method.md: Activation patching): lockstep generation, the base model picks every token.


rule patch_generate:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/train",
        neurons=neurons_of(lambda wc: runs.patch_kind(wc.condition)),
        control=control_of(lambda wc: runs.patch_kind(wc.condition)),
    output:
        generations=f"{RES}/{{model}}/{{lean}}/{{src}}/patch-{{condition}}/generations.jsonl",
    log:
        f"{RES}/logs/patch_generate/{{model}}/{{lean}}/{{src}}/{{condition}}.log",
    benchmark:
        f"{RES}/benchmarks/patch_generate/{{model}}/{{lean}}/{{src}}/{{condition}}.tsv"
    wildcard_constraints:
        condition=runs.PATCH_CONDITION,
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
