# Data: the quickstart corpus (when configured), one prepared Parquet per source, prefetch.


if config.get("quickstart_corpus"):

    rule quickstart_corpus:
        output:
            _corpus_outputs(),
        params:
            root=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
            options=" ".join(
                f"--{key.replace('_', '-')} {value}"
                for key, value in config["quickstart_corpus"].items()
                if key != "root"
            ),
        log:
            f"{RESULTS}/logs/data/quickstart_corpus.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/quickstart_corpus.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "pairrel data quickstart --out {params.root} {params.options} > {log} 2>&1"


rule prepare_source:
    input:
        _source_inputs,
    output:
        parquet=f"{RESULTS}/data/{{data}}/{{source}}.parquet",
        meta=f"{RESULTS}/data/{{data}}/{{source}}.meta.json",
    params:
        config=MERGED_CONFIG,
        spec=lambda wc: config["data"][wc.data]["sources"][wc.source],
    log:
        f"{RESULTS}/logs/data/{{data}}/{{source}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{data}}/{{source}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "pairrel data prepare --config {params.config} --data {wildcards.data}"
        " --source {wildcards.source} --out {output.parquet} > {log} 2>&1"


rule prefetch:
    output:
        touch(f"{RESULTS}/prefetch.done"),
    params:
        config=MERGED_CONFIG,
    log:
        f"{RESULTS}/logs/data/prefetch.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "pairrel data prefetch --config {params.config} > {log} 2>&1"
