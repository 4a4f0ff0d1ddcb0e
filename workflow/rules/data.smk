# Data: the frozen config, the quickstart corpus (when configured), one prepared Parquet per
# source (per fold for K-fold sources), prefetch.


localrules:
    study_config,


rule study_config:
    input:
        TASK_SET_FILES,
    output:
        CONFIG_FILE,
    params:
        config=STUDY.cfg,
    log:
        STUDY.log("study_config.log"),
    run:
        # Written by a job, under Snakemake's lock: a refused or dry run leaves it untouched.
        write_yaml(output[0], params.config)


if STUDY.cfg["quickstart_corpus"]:

    rule quickstart_corpus:
        output:
            paths(STUDY.corpus_outputs()),
        params:
            # the corpus root: the folder above each split's meta.json
            root=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
            options=STUDY.corpus_options(),
        log:
            STUDY.log("data", "quickstart_corpus.log"),
        benchmark:
            STUDY.benchmark_file("data", "quickstart_corpus.tsv")
        conda:
            "../../envs/pairrel.yaml"
        shell:
            "pairrel data quickstart --out {params.root:q} {params.options} > {log:q} 2>&1"


rule prepare_source:
    input:
        lambda wc: paths(STUDY.source_inputs(wc.data, wc.source)),
    output:
        parquet=f"{RESULTS}/data/{{data}}/{{source}}.parquet",
        meta=f"{RESULTS}/data/{{data}}/{{source}}.meta.json",
    params:
        job=lambda wc: STUDY.source_job_json(wc.data, wc.source),
    log:
        f"{RESULTS}/logs/data/{{data}}/{{source}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{data}}/{{source}}.tsv"
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prepare --job {params.job:q} --out {output.parquet:q} > {log:q} 2>&1"


rule prepare_fold:
    input:
        lambda wc: paths(STUDY.source_inputs(wc.data, wc.source)),
    output:
        parquet=f"{RESULTS}/data/{{data}}/{{source}}.fold~{{fold}}.parquet",
        meta=f"{RESULTS}/data/{{data}}/{{source}}.fold~{{fold}}.meta.json",
        folds=f"{RESULTS}/data/{{data}}/{{source}}.fold~{{fold}}.folds.json",
    params:
        job=lambda wc: STUDY.source_job_json(wc.data, wc.source, int(wc.fold)),
    log:
        f"{RESULTS}/logs/data/{{data}}/{{source}}.fold~{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{data}}/{{source}}.fold~{{fold}}.tsv"
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prepare --job {params.job:q} --out {output.parquet:q} > {log:q} 2>&1"


rule prefetch:
    input:
        ancient(CONFIG_FILE),
    output:
        touch(f"{RESULTS}/prefetch.done"),
    log:
        f"{RESULTS}/logs/data/prefetch.log",
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prefetch --config {input:q} > {log:q} 2>&1"
