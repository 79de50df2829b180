# PNLAC (method.md: PNLAC): per-topic activation contrasts of M_s vs M0, then general / specific sets.


rule dump_activations:
    input:
        model=model_record,
        files=rules.download_data.output.files,
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/train",
    output:
        dump=temp(
            directory(f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/dumps/{{topic}}")
        ),
    log:
        f"{RES}/logs/dump_activations/{{model}}/{{lean}}/{{src}}/{{kind}}/{{topic}}.log",
    benchmark:
        f"{RES}/benchmarks/dump_activations/{{model}}/{{lean}}/{{src}}/{{kind}}/{{topic}}.tsv"
    conda:
        "../../envs/polneurons.yaml"
    threads: config["resources"]["threads"]
    resources:
        **MODEL_JOB,
    params:
        **RUN_PARAMS,
        eval_prompts=config["data"]["eval_prompts"],
        topic_names=config["prompt_topic_names"],
        neurons=DUMP_SETTINGS,
        pools=POOLS,
        seed=config["seed"],
    script:
        "../../scripts/dump_activations.py"


# The same dump of a trained run on its source topic, apart from the localization dumps (which
# it would otherwise regenerate once they are deleted, rerunning everything downstream).
use rule dump_activations as dump_moved with:
    output:
        dump=temp(
            directory(f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/moved/{{topic}}")
        ),
    log:
        f"{RES}/logs/dump_moved/{{model}}/{{lean}}/{{src}}/{{kind}}/{{topic}}.log",
    benchmark:
        f"{RES}/benchmarks/dump_moved/{{model}}/{{lean}}/{{src}}/{{kind}}/{{topic}}.tsv"


# G and S_t of the vanilla run, and G_null of the null fine-tune (null_finetune)
rule localize_neurons:
    input:
        dumps=expand(
            f"{RES}/{{{{model}}}}/{{{{lean}}}}/{{{{src}}}}/{{{{kind}}}}/dumps/{{topic}}",
            topic=config["topics"],
        ),
        adapter=f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/train",
    output:
        neurons=directory(f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/neurons"),
    log:
        f"{RES}/logs/localize_neurons/{{model}}/{{lean}}/{{src}}/{{kind}}.log",
    wildcard_constraints:
        kind=kinds.LOCALIZED_KIND,
    conda:
        "../../envs/polneurons.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        topics=config["topics"],
        k=config["neurons"]["k"],
        bootstrap=config["neurons"]["bootstrap"],
        neurons=LOCALIZE_SETTINGS,
        seed=config["seed"],
    script:
        "../../scripts/localize_neurons.py"


# One draw of a random control (method.md: Activation patching, InhibitFT): as many neurons as G (patch-random-s<k>) or F_n
# (rnd-<strategy>-n<n>-s<k>), none of them in that set; cached like any run.
rule random_control:
    input:
        neurons=f"{RES}/{{model}}/{{lean}}/{{src}}/ft/neurons",
    output:
        neurons=f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/control/neurons.pt",
        checksum=f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/control/neurons.pt.sha256",
        report=f"{RES}/{{model}}/{{lean}}/{{src}}/{{kind}}/control/report.json",
    log:
        f"{RES}/logs/random_control/{{model}}/{{lean}}/{{src}}/{{kind}}.log",
    wildcard_constraints:
        kind=kinds.CONTROL_KIND,
    localrule: True
    conda:
        "../../envs/polneurons.yaml"
    params:
        spec=lambda wc: control_spec(wc.kind, IFT, config["neurons"]["site"]),
        seed=config["seed"],
    script:
        "../../scripts/random_control.py"
