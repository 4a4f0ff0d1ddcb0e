# pairrel: pair relevance (BCE) vs softmax losses across label granularities, as one DAG.
#   snakemake --cores all --use-conda                 # the paper's study (config.yaml)
#   snakemake --cores 2 --configfile presets/quickstart.yaml   # CPU quickstart
#   snakemake --profile profiles/slurm                # the same DAG on SLURM
#   snakemake --cores 1 report                        # tables + figures from cached results
#   snakemake --cores all --use-conda baseline_check  # LLM2Vec's published checkpoints vs their scores
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/baseline.smk"


localrules:
    all,
    data,
    train,
    evaluate,
    report,
    baseline_check,


rule all:
    input:
        EVAL_MARKERS,
        rules.report.output,
    default_target: True


rule data:
    input:
        PREPARED,


rule train:
    input:
        TRAIN_DONE,


rule evaluate:
    input:
        EVAL_MARKERS,
