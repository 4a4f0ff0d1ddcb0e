# Evaluation: one job per (checkpoint, task group) and per (base model, task group). Each
# checkpoint is its own mteb model whose revision fingerprints its weights, so a retrained run
# is evaluated afresh and an unchanged one is never recomputed (pairrel.study).


localrules:
    resolve_model,
    task_set,


rule task_set:
    output:
        LAYOUT.pattern(layout.TASK_SET),
    params:
        content=job_arg("task_set", "content"),
    log:
        LAYOUT.log_pattern("task_set"),
    run:
        write_json(output[0], params.content)


rule evaluate_checkpoint:
    input:
        run=job_input("evaluate_checkpoint", "run"),
        done=job_input("evaluate_checkpoint", "done"),
        config=ancient(CONFIG_FILE),
        data=job_input("evaluate_checkpoint", "data"),
        tasks=job_input("evaluate_checkpoint", "tasks"),
    output:
        LAYOUT.pattern(layout.EVAL_MARKER),
    params:
        tasks=job_arg("evaluate_checkpoint", "tasks"),
    log:
        LAYOUT.log_pattern("evaluate_checkpoint"),
    benchmark:
        LAYOUT.benchmark_pattern("evaluate_checkpoint")
    threads: job_arg("evaluate_checkpoint", "threads")
    resources:
        gpu=sized("evaluate_checkpoint", "gpu"),
        mem_mb=sized("evaluate_checkpoint", "mem_mb"),
        runtime=sized("evaluate_checkpoint", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel evaluate --config {input.config:q} --run {wildcards.run:q} --step {wildcards.step}"
        " --group {wildcards.group:q} --tasks {params.tasks:q} --marker {output:q} > {log:q} 2>&1"


rule resolve_model:
    output:
        LAYOUT.pattern(layout.RESOLVED_MODEL),
    params:
        model=job_arg("resolve_model", "model"),
    log:
        LAYOUT.log_pattern("resolve_model"),
    run:
        write_yaml(output[0], params.model)


rule evaluate_base:
    input:
        model=job_input("evaluate_base", "model"),
        config=ancient(CONFIG_FILE),
        data=job_input("evaluate_base", "data"),
        tasks=job_input("evaluate_base", "tasks"),
    output:
        LAYOUT.pattern(layout.BASE_MARKER),
    params:
        tasks=job_arg("evaluate_base", "tasks"),
    log:
        LAYOUT.log_pattern("evaluate_base"),
    benchmark:
        LAYOUT.benchmark_pattern("evaluate_base")
    threads: job_arg("evaluate_base", "threads")
    resources:
        gpu=sized("evaluate_base", "gpu"),
        mem_mb=sized("evaluate_base", "mem_mb"),
        runtime=sized("evaluate_base", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel evaluate --config {input.config:q} --base {wildcards.model:q} --group {wildcards.group:q}"
        " --tasks {params.tasks:q} --marker {output:q} > {log:q} 2>&1"
