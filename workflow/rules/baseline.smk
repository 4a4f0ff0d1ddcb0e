# LLM2Vec's published supervised checkpoints (base, MNTP merged, published LoRA), evaluated as the
# study evaluates its own, against their published per-task scores (pairrel.evaluate.baseline):
#   snakemake --cores all --use-conda baseline_check
# A table per model under results/{experiment}/baseline_check/; a task beyond the reference
# file's tolerance fails the job (its table is left as <model>.failed.md).


rule baseline_check_model:
    input:
        reference=BASELINE_REFERENCE,
        config=ancient(CONFIG_FILE),
    output:
        LAYOUT.pattern(layout.BASELINE_TABLE),
    log:
        LAYOUT.log_pattern("baseline_check_model"),
    benchmark:
        LAYOUT.benchmark_pattern("baseline_check_model")
    threads: job_arg("baseline_check_model", "threads")
    resources:
        gpu=sized("baseline_check_model", "gpu"),
        mem_mb=sized("baseline_check_model", "mem_mb"),
        runtime=sized("baseline_check_model", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel baseline-check --config {input.config:q} --model {wildcards.model:q}"
        " --reference {input.reference:q} --out {output:q} > {log:q} 2>&1"


rule baseline_check:
    input:
        baseline_tables,
