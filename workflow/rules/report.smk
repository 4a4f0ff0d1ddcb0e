# Report: tables and figures. Two rules write the same files:
# - `report_study` (used by `all`) waits for every evaluation of the study;
# - `report` (the target `snakemake report`) reads whatever results are cached and schedules
#   no training or evaluation, so it works on a fresh clone with only results/ copied in.
ruleorder: report_study > report


rule report_study:
    input:
        EVAL_MARKERS,
    output:
        REPORT_OUTPUTS,
    params:
        args=_report_args(),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "pairrel report {params.args} > {log} 2>&1"


rule report:
    input:
        sorted(glob.glob(f"{RESULTS}/mteb/results/**/*.json", recursive=True)),
    output:
        REPORT_OUTPUTS,
    params:
        args=_report_args(),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "pairrel report {params.args} > {log} 2>&1"
