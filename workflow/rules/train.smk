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
        # Every value that changes the weights, so Snakemake retrains when one changes (the
        # trainer then starts over instead of resuming checkpoints of the old config).
        training=config["training"],
        model=lambda wc: config["models"][wc.model],
        data_spec=lambda wc: config["data"][wc.data],
        loss_spec=lambda wc: config["losses"][wc.loss],
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
