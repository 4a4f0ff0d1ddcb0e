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
        content=lambda wc, output: TASK_SET_CONTENT[output[0]],
    log:
        LAYOUT.log_pattern("task_set"),
    run:
        write_json(output[0], params.content)


rule evaluate_checkpoint:
    input:
        run=lambda wc: str(run_of(wc).resolved_file),
        done=LAYOUT.pattern(layout.RUN_DONE),
        config=ancient(CONFIG_FILE),
        data=lambda wc: paths(STUDY.eval_inputs(run_of(wc), wc.group)),
        tasks=task_set_input(lambda wc: run_of(wc).full_benchmark(int(wc.step))),
    output:
        LAYOUT.pattern(layout.EVAL_MARKER),
    params:
        tasks=lambda wc: ",".join(STUDY.tasks_for(wc.group, final=run_of(wc).full_benchmark(int(wc.step)))),
    log:
        LAYOUT.log_pattern("evaluate_checkpoint"),
    benchmark:
        LAYOUT.benchmark_pattern("evaluate_checkpoint")
    threads: STUDY.cfg["training"]["num_threads"] or 1
    resources:
        gpu=sized("evaluate", "gpu"),
        mem_mb=sized("evaluate", "mem_mb"),
        runtime=sized("evaluate", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel evaluate --config {input.config:q} --run {wildcards.run:q} --step {wildcards.step}"
        " --group {wildcards.group:q} --tasks {params.tasks:q} --marker {output:q} > {log:q} 2>&1"


rule resolve_model:
    output:
        LAYOUT.pattern(layout.RESOLVED_MODEL),
    params:
        model=lambda wc: STUDY.cfg["models"][wc.model],
    log:
        LAYOUT.log_pattern("resolve_model"),
    run:
        write_yaml(output[0], params.model)


rule evaluate_base:
    input:
        model=lambda wc: str(STUDY.model_file(wc.model)),
        config=ancient(CONFIG_FILE),
        data=lambda wc: paths(STUDY.eval_inputs(None, wc.group)),
        tasks=task_set_input(lambda wc: True),
    output:
        LAYOUT.pattern(layout.BASE_MARKER),
    params:
        tasks=lambda wc: ",".join(STUDY.tasks_for(wc.group)),
    log:
        LAYOUT.log_pattern("evaluate_base"),
    benchmark:
        LAYOUT.benchmark_pattern("evaluate_base")
    threads: STUDY.cfg["training"]["num_threads"] or 1
    resources:
        gpu=sized("evaluate", "gpu"),
        mem_mb=sized("evaluate", "mem_mb"),
        runtime=sized("evaluate", "runtime"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel gpu-run --gpus {resources.gpu} -- pairrel evaluate --config {input.config:q} --base {wildcards.model:q} --group {wildcards.group:q}"
        " --tasks {params.tasks:q} --marker {output:q} > {log:q} 2>&1"
