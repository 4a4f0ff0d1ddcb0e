# Report: every table and figure from the cached results. `snakemake report` builds it from
# whatever evaluations exist (a fresh clone with only results/ copied in is enough) and never
# schedules training or evaluation.


rule report:
    input:
        config=ancient(CONFIG_FILE),
        markers=report_markers,
    output:
        # report(): shown, with its caption, by `snakemake --report report.html`
        report(
            f"{FIGURES}/main_table.csv",
            caption="../report/main_table.rst",
            category="Tables",
            subcategory="Benchmark",
        ),
        f"{FIGURES}/main_table.md",
        f"{FIGURES}/main_table.tex",
        report(
            f"{FIGURES}/per_task.csv",
            caption="../report/per_task.rst",
            category="Tables",
            subcategory="Benchmark",
        ),
        report(
            f"{FIGURES}/type_scores.png",
            caption="../report/type_scores.rst",
            category="Figures",
            subcategory="Benchmark",
        ),
        f"{FIGURES}/type_scores.pdf",
        report(
            f"{FIGURES}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Figures",
            subcategory="Training",
        ),
        f"{FIGURES}/training_curves.pdf",
        # score vs step: when at least two checkpoints of a run are evaluated
        (
            [
                report(
                    f"{FIGURES}/ablation_step.png",
                    caption="../report/ablation_step.rst",
                    category="Figures",
                    subcategory="Training",
                ),
                f"{FIGURES}/ablation_step.pdf",
            ]
            if any(len(run.eval_steps) >= 2 for run in STUDY.runs)
            else []
        ),
    params:
        args=STUDY.report_args(),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/pairrel.yaml"
    shell:
        "pairrel report --config {input.config:q} {params.args} > {log:q} 2>&1"
