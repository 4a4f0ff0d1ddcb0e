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
        config=JOBS.get("study_config").args["config"],
    log:
        str(LAYOUT.log("study_config")),
    run:
        # Written by a job, under Snakemake's lock: a refused or dry run leaves it untouched.
        write_yaml(output[0], params.config)


if STUDY.cfg["quickstart_corpus"]:

    rule quickstart_corpus:
        output:
            list(JOBS.get("quickstart_corpus").outputs),
        params:
            root=job_arg("quickstart_corpus", "root"),
            options=job_arg("quickstart_corpus", "options"),
        log:
            str(LAYOUT.log("quickstart_corpus")),
        benchmark:
            str(LAYOUT.benchmark("quickstart_corpus"))
        conda:
            "../../envs/pairrel.yaml"
        shell:
            "pairrel data quickstart --out {params.root:q} {params.options} > {log:q} 2>&1"


rule prepare_source:
    input:
        job_input("prepare_source", "files"),
    output:
        parquet=LAYOUT.prepared_pattern(folds=False),
        meta=LAYOUT.prepared_pattern(folds=False, suffix=layout.META),
    params:
        job=job_arg("prepare_source", "job"),
    log:
        LAYOUT.log_pattern("prepare_source"),
    benchmark:
        LAYOUT.benchmark_pattern("prepare_source")
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prepare --job {params.job:q} --out {output.parquet:q} > {log:q} 2>&1"


rule prepare_fold:
    input:
        job_input("prepare_fold", "files"),
    output:
        parquet=LAYOUT.prepared_pattern(folds=True),
        meta=LAYOUT.prepared_pattern(folds=True, suffix=layout.META),
        folds=LAYOUT.prepared_pattern(folds=True, suffix=layout.FOLDS),
    params:
        job=job_arg("prepare_fold", "job"),
    log:
        LAYOUT.log_pattern("prepare_fold"),
    benchmark:
        LAYOUT.benchmark_pattern("prepare_fold")
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prepare --job {params.job:q} --out {output.parquet:q} > {log:q} 2>&1"


rule prefetch:
    input:
        ancient(CONFIG_FILE),
    output:
        touch(LAYOUT.pattern(layout.PREFETCH_DONE)),
    log:
        LAYOUT.log_pattern("prefetch"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel data prefetch --config {input:q} > {log:q} 2>&1"
