# Activation patching (METHOD 7): lockstep generation, the base model picks every token.


rule patch_generate:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/train",
        neurons=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/neurons",
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
        root=data_root,
        topics=config["topics"],
        test_sets=TEST_SETS,
        eval_prompts=config["data"]["eval_prompts"],
        generation=config["generation"],
        topic_names=config["prompt_topic_names"],
        site=config["neurons"]["site"],
        prompt_format=config["prompt_format"],
        seed=config["seed"],
        device=config["device"],
        dtype=config["dtype"],
        adapter_dtype=config["inference_adapter_dtype"],
    script:
        "../../scripts/patch_generate.py"
