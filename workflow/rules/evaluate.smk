# Evaluation: one job per (checkpoint, task group); mteb skips results it already has.


rule evaluate_checkpoint:
    input:
        f"{RESULTS}/runs/{RUN_PATTERN}/done",
    output:
        touch(f"{RESULTS}/eval/{RUN_PATTERN}/step~{{step}}/{{group}}.done"),
    params:
        config=MERGED_CONFIG,
        run_id=RUN_PATTERN,
        checkpoint=f"{RESULTS}/runs/{RUN_PATTERN}/checkpoint-{{step}}",
        cache=f"{RESULTS}/mteb",
        prepared=f"{RESULTS}/data",
        evaluation=config["evaluation"],
    log:
        f"{RESULTS}/logs/evaluate/{RUN_PATTERN}/step~{{step}}/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{RUN_PATTERN}/step~{{step}}/{{group}}.tsv"
    resources:
        gpu=1,
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "pairrel evaluate --config {params.config} --run {params.run_id}"
        " --checkpoint {params.checkpoint} --task-type {wildcards.group}"
        " --prepared {params.prepared} --out {params.cache} > {log} 2>&1"


rule evaluate_base:
    input:
        _corpus_outputs(),
        # held-out evaluation reads the fold splits written when data is prepared
        lambda wc: PREPARED if wc.group == "heldout" else [],
    output:
        touch(f"{RESULTS}/eval/base/model~{{model}}/{{group}}.done"),
    params:
        config=MERGED_CONFIG,
        cache=f"{RESULTS}/mteb",
        prepared=f"{RESULTS}/data",
        evaluation=config["evaluation"],
    log:
        f"{RESULTS}/logs/evaluate/base/model~{{model}}/{{group}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/base/model~{{model}}/{{group}}.tsv"
    resources:
        gpu=1,
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "pairrel evaluate --config {params.config} --base {wildcards.model}"
        " --task-type {wildcards.group} --prepared {params.prepared} --out {params.cache} > {log} 2>&1"
