# Training: one job per run. Its input is the run's resolved config, written by its own job into a
# file named by its content (runs/{run}/resolved/{hash}.yaml): a changed setting is another input,
# so Snakemake retrains the run; the trainer resumes only checkpoints of the same settings and
# data (pairrel.study.training_fingerprint).


localrules:
    resolve_run,


rule resolve_run:
    output:
        LAYOUT.pattern(layout.RESOLVED_RUN),
    params:
        run=job_arg("resolve_run", "run"),
    log:
        LAYOUT.log_pattern("resolve_run"),
    run:
        write_yaml(output[0], params.run)


rule train_run:
    input:
        run=job_input("train_run", "run"),
        prepared=job_input("train_run", "prepared"),
    output:
        done=LAYOUT.pattern(layout.RUN_DONE),
        run=LAYOUT.pattern(layout.RUN_YAML),
    log:
        LAYOUT.log_pattern("train_run"),
    benchmark:
        LAYOUT.benchmark_pattern("train_run")
    params:
        # `pairrel`, or torchrun over training.gpus processes for a multi-GPU run
        launcher=job_arg("train_run", "launcher"),
    threads: job_arg("train_run", "threads")
    resources:
        gpu=sized("train_run", "gpu"),
        mem_mb=sized("train_run", "mem_mb"),
        runtime=sized("train_run", "runtime"),
        # SIGTERM ahead of the limit (checkpoint, exit 143); its lead is inside `runtime`
        slurm_extra=sized("train_run", "slurm_extra"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        # gpu-run: its own GPU slots on a multi-GPU box (CUDA_VISIBLE_DEVICES); a no-op on SLURM
        # and on CPU
        "pairrel gpu-run --gpus {resources.gpu} -- {params.launcher} train --run-config {input.run:q} > {log:q} 2>&1"
