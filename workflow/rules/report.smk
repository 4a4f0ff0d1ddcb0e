# Report: every table and figure from the cached results. `snakemake report` builds it from
# whatever evaluations exist (a fresh clone with only results/ copied in is enough) and never
# schedules training or evaluation.


def report_markers(wildcards):
    """Asked for alone (`snakemake report`), the report reads what is cached; as part of `all`
    it waits for every evaluation. Once the study is complete both are the same input set, so
    the two never make each other rerun. (An input function: the targets are known only after
    the Snakefile is parsed.)"""
    if set(workflow.dag_settings.targets) == {"report"}:
        return [m for m in EVAL_MARKERS if os.path.exists(m)]
    return EVAL_MARKERS


rule report:
    input:
        config=ancient(CONFIG_FILE),
        markers=report_markers,
    output:
        REPORT_OUTPUTS,
    params:
        args=STUDY.report_args(),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel report --config {input.config:q} {params.args} > {log:q} 2>&1"
