localrules:
    download_data,


rule download_data:
    output:
        files=[raw(rel) for rel in FILES],
    log:
        f"{RES}/logs/download_data.log",
    conda:
        "../../envs/polneurons.yaml"
    # what the files are (their sha256) is a param; where they come from (data.mirror,
    # data.base_url) is not, so switching the mirror leaves every output up to date
    params:
        sha256=FILES,
    script:
        "../../scripts/download_data.py"


rule prepare_model:
    output:
        record=f"{RES}/models/{{model}}/model.json",
    log:
        f"{RES}/logs/prepare_model/{{model}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare_model/{{model}}.tsv"
    localrule: NETWORK_LOCAL
    conda:
        "../../envs/polneurons.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb,
        runtime=runtime,
    params:
        spec=lambda wc: SPECS[wc.model],
    script:
        "../../scripts/prepare_model.py"


rule train_judge:
    input:
        files=rules.download_data.output.files,
    output:
        model=CLASSIFIER,
        agreement=CLASSIFIER_AGREEMENT,
    log:
        f"{RES}/logs/train_judge.log",
    benchmark:
        f"{RES}/benchmarks/train_judge.tsv"
    conda:
        "../../envs/polneurons.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        root=data_root,
        topics=list(TOPICS),
        test_fraction=config["judge"]["classifier"]["test_fraction"],
        no_stance_weight=config["judge"]["classifier"]["no_stance_weight"],
        pools=POOLS,
        seed=config["seed"],
    script:
        "../../scripts/train_judge.py"
