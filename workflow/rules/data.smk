localrules:
    download_data,


rule download_data:
    output:
        files=[raw(rel) for rel in FILES],
    params:
        base_url=config["data"]["base_url"],
        mirror=config["data"]["mirror"],
        root=f"{RES}/data/raw",
    log:
        f"{RES}/logs/download_data.log",
    script:
        "../../scripts/download_data.py"


rule prepare_model:
    output:
        record=f"{RES}/models/{{model}}/model.json",
    params:
        spec=lambda wc: SPECS[wc.model],
    log:
        f"{RES}/logs/prepare_model/{{model}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare_model/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb,
        runtime=runtime,
    script:
        "../../scripts/prepare_model.py"


rule train_judge:
    input:
        files=rules.download_data.output.files,
    output:
        model=f"{RES}/judge/classifier.pkl",
        agreement=f"{RES}/judge/agreement.json",
    params:
        root=f"{RES}/data/raw",
        topics=list(TOPICS),
        test_fraction=config["judge"]["classifier"]["test_fraction"],
        seed=config["seed"],
    log:
        f"{RES}/logs/train_judge.log",
    benchmark:
        f"{RES}/benchmarks/train_judge.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../scripts/train_judge.py"
