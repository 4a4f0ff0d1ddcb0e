# LLM2Vec's published supervised checkpoints (base, MNTP merged, published LoRA), evaluated as the
# study evaluates its own, against their published per-task scores (pairrel.evaluate.baseline):
#   snakemake --cores all --use-conda baseline_check
# A table per model under results/{experiment}/baseline_check/; a task beyond the reference
# file's tolerance fails the job (its table is left as <model>.failed.md).
from pairrel.evaluate.baseline import REFERENCE_FILE, baseline_models, load_reference

BASELINE_REFERENCE = str(REFERENCE_FILE)


rule baseline_check_model:
    input:
        reference=BASELINE_REFERENCE,
        config=ancient(CONFIG_FILE),
    output:
        f"{RESULTS}/baseline_check/{{model}}.md",
    log:
        f"{RESULTS}/logs/baseline_check/model~{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baseline_check/model~{{model}}.tsv"
    threads: STUDY.cfg["training"]["num_threads"] or 1
    resources:
        gpu=sized("evaluate", "gpu"),
        mem_mb=sized("evaluate", "mem_mb"),
        runtime=sized("evaluate", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel baseline-check --config {input.config:q} --model {wildcards.model:q}"
        " --reference {input.reference:q} --out {output:q} > {log:q} 2>&1"


# One table per grid model with a published checkpoint; the reference file is read only when
# this target is asked for.
rule baseline_check:
    input:
        lambda wc: [f"{RESULTS}/baseline_check/{m}.md" for m in baseline_models(STUDY, load_reference(BASELINE_REFERENCE))],
