# Vanilla fine-tuning (method.md: Fine-tuning) and InhibitFT (method.md: InhibitFT): one script, two rules.


rule finetune:
    input:
        model=model_record,
        files=rules.download_data.output.files,
    output:
        train=directory(protected(f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/train")),
    log:
        f"{RES}/logs/finetune/{{model}}/{{lean}}/{{src}}/{{kind}}.log",
    benchmark:
        f"{RES}/benchmarks/finetune/{{model}}/{{lean}}/{{src}}/{{kind}}.tsv"
    wildcard_constraints:
        kind=kinds.VANILLA_KIND,
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **TRAIN_PARAMS,
        settings=lambda wc: (
            config["finetune"]
            if kinds.parse_kind(wc.kind).family in ("ft", "null")
            else inhibitft_finetune(config)
        ),
        inhibit=None,
    script:
        "../../scripts/finetune.py"


rule inhibitft:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        neurons=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/neurons",
        # G_null's folder for the null control (as many neurons as F_n, the top of G_null)
        inhibited_from=neurons_of(lambda wc: wc.kind),
        control=control_of(lambda wc: wc.kind),
    output:
        train=directory(protected(f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/train")),
    log:
        f"{RES}/logs/inhibitft/{{model}}/{{lean}}/{{src}}/{{kind}}.log",
    benchmark:
        f"{RES}/benchmarks/inhibitft/{{model}}/{{lean}}/{{src}}/{{kind}}.tsv"
    wildcard_constraints:
        kind=kinds.INHIBIT_KIND,
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **TRAIN_PARAMS,
        settings=inhibitft_finetune(config),
        inhibit=lambda wc: inhibit_spec(wc.kind, IFT, config["neurons"]["site"]),
    script:
        "../../scripts/finetune.py"
