# Training: one job per run; a rerun resumes from the run's last checkpoint.


rule train_run:
    input:
        lambda wc: prepared_files(wc.data),
    output:
        f"{RESULTS}/runs/{RUN_PATTERN}/done",
    params:
        config=MERGED_CONFIG,
        run_id=RUN_PATTERN,
        run_dir=f"{RESULTS}/runs/{RUN_PATTERN}",
        prepared=f"{RESULTS}/data/{{data}}",
        training=config["training"],
    log:
        f"{RESULTS}/logs/train/{RUN_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN_PATTERN}.tsv"
    resources:
        gpu=1,
    conda:
        "../../envs/train.yaml"
    shell:
        "pairrel train --config {params.config} --run {params.run_id}"
        " --prepared {params.prepared} --out {params.run_dir} > {log} 2>&1"
