# Report: every table and figure from the cached results. `snakemake report` builds it from
# whatever evaluations exist (a fresh clone with only results/ copied in is enough) and never
# schedules training or evaluation.


rule report:
    input:
        config=ancient(CONFIG_FILE),
        markers=report_markers,
    output:
        shown("main_table", "Tables", "Benchmark"),
        shown("per_task", "Tables", "Benchmark"),
        shown("type_scores", "Figures", "Benchmark"),
        shown("training_curves", "Figures", "Training"),
        # score vs step: when at least two checkpoints of a run are evaluated
        shown("ablation_step", "Figures", "Training") if JOBS.get("report").args["ablation_step"] else [],
    params:
        args=JOBS.get("report").args["args"],
        # each data mix's training schedule, for the captions (the global description only sees
        # snakemake.config, the figures' captions also their job's params)
        schedules=JOBS.get("report").args["schedules"],
    log:
        LAYOUT.log_pattern("report"),
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel report --config {input.config:q} {params.args} > {log:q} 2>&1"
