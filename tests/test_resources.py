"""Job sizes: hand-computed values for the paper's 8B model (formulas in pairrel.resources)."""

import pytest

from pairrel import resources as R

LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256,
             "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}


def test_llama3_8b_parameter_count():
    # per layer 2*4096^2 + 2*4096*1024 + 3*4096*14336 + 2*4096 = 218,112,000; x32 = 6,979,584,000
    # + embeddings and LM head 2*128256*4096 = 1,050,673,152 + final norm 4096
    assert R.llama_param_count(LLAMA3_8B) == 8_030_261_248
    assert R.llama_param_count({**LLAMA3_8B, "tie_word_embeddings": True}) == 8_030_261_248 - 128256 * 4096


def test_params_b_prefers_the_config_key_and_names_it_when_missing():
    assert R.params_b({"params_b": 1.3}) == 1.3
    assert R.params_b({"params_b": None}, LLAMA3_8B) == pytest.approx(8.030261248)
    with pytest.raises(R.ResourceError, match=r"models\.llama3-8b\.params_b"):
        R.params_b({"params_b": None}, name="llama3-8b")
    with pytest.raises(R.ResourceError, match="positive"):
        R.params_b({"params_b": -1}, name="x")


def test_memory_of_8b_jobs():
    # train: 1.5 * (2 * 8.03 + 6 + 4) GB = 39.09e9 B = 36.41 GiB -> 37 GiB
    assert R.mem_mb("train", 8.03) == 37 * 1024
    # Retrieval: 1.5 * (16.06 + 6 + 24) GB = 69.09e9 B = 64.35 GiB -> 65 GiB
    assert R.mem_mb("evaluate", 8.03, "Retrieval") == 65 * 1024
    assert R.mem_mb("evaluate", 8.03, "STS") == 37 * 1024
    # a job evaluating several groups needs the largest one's memory
    assert R.mem_mb("evaluate", 8.03, ["STS", "Retrieval"]) == 65 * 1024
    # float32 doubles the weights: 1.5 * (32.12 + 10) GB = 63.18e9 B = 58.84 GiB -> 59 GiB
    assert R.mem_mb("train", 8.03, dtype="float32") == 59 * 1024
    with pytest.raises(R.ResourceError, match="dtype"):
        R.mem_mb("train", 8.03, dtype="int3")


LLAMA = {"params_b": 8.03, "dtype": "bfloat16"}
MINILM = {"params_b": 0.023, "dtype": "float32"}


def test_runtime_of_8b_jobs():
    load = 5 + 8.03
    # train: 9.85 GPU-h (the plan's 147,456,000 tokens at 4,160 tokens/s); 13.03 + 1.5 * 60 * 9.85
    # = 899.53 -> 900, + 10 minutes of SIGTERM lead = 910
    train = R.job_resources("train", LLAMA, 9.85, training_cfg={"gpus": 1})
    assert train == {"mem_mb": 37 * 1024, "runtime": 910, "gpu": 1, "slurm_extra": "--signal=TERM@600"}
    # Retrieval, 32.16 GPU-h: 13.03 + 1.5 * 60 * 32.16 = 2907.43 -> capped at 48 h
    assert R.job_resources("evaluate", LLAMA, 32.16, "Retrieval")["runtime"] == 2880
    assert R.job_resources("evaluate", LLAMA, 32.16, "Retrieval", max_minutes=None)["runtime"] == 2908
    # 0.07 GPU-h: 13.03 + 6.3 = 19.33 -> 20
    assert R.job_resources("evaluate", LLAMA, 0.07, "Retrieval")["runtime"] == 20
    assert R.runtime_minutes(8.03, 9.85, attempt=2) == 1800  # 2 * 899.53 = 1799.06
    assert R.runtime_minutes(8.03, 48.18, max_minutes=2880) == 2880


def test_tasks_the_plan_cannot_price_get_a_floor():
    # a held-out fold (no mteb statistics, 0 tokens): 0.1 GPU-h; 13.03 + 1.5 * 60 * 0.1 = 22.03 -> 23
    assert R.job_gpu_hours(0.0, 1) == pytest.approx(0.1)
    assert R.job_resources("evaluate", LLAMA, R.job_gpu_hours(0.0, 1), "heldout")["runtime"] == 23
    # priced hours keep their price and the unpriced tasks add theirs: 2 + 5 * 0.1
    assert R.job_gpu_hours(2.0, 5) == pytest.approx(2.5)


def test_gpus_divide_the_hours():
    # 10 GPU-h on 4 GPUs: 13.03 + 1.5 * 60 * 10 / 4 = 238.03 -> 239, + 10 SIGTERM lead
    res = R.job_resources("train", LLAMA, 10.0, training_cfg={"gpus": 4})
    assert res == {"mem_mb": 37 * 1024, "runtime": 249, "gpu": 4, "slurm_extra": "--signal=TERM@600"}
    with pytest.raises(ValueError, match="training.gpus"):
        R.gpus("train", {"gpus": 0})


def test_training_time_leaves_the_sigterm_lead_free_even_for_a_tiny_model():
    # MiniLM (0.023 B), the quickstart's 21,504 tokens at 630 tokens/s = 0.00948 GPU-h: load
    # 5.023 + 1.5 * 60 * 0.00948 = 5.88 -> 6 minutes of work, + 10 minutes before which SIGTERM comes
    hours = 21504 / 630 / 3600
    tiny = R.job_resources("train", MINILM, hours, training_cfg={"gpus": 1})
    assert tiny["runtime"] == 16 and tiny["slurm_extra"] == "--signal=TERM@600"
    assert R.job_resources("train", MINILM, hours, training_cfg={"gpus": 1}, attempt=2)["runtime"] == 12 + 10  # ceil(2 * 5.876)
    # evaluation takes SLURM's default (SIGTERM at the limit): nothing added, no slurm_extra;
    # three local tasks: 5.023 + 1.5 * 60 * 0.3 = 32.02 -> 33
    local = R.job_resources("evaluate", MINILM, R.job_gpu_hours(0.0, 3), "local")
    assert local["runtime"] == 33 and local["slurm_extra"] == ""
    # the cap covers the whole request
    assert R.job_resources("train", LLAMA, 9.85, training_cfg={"gpus": 1}, max_minutes=600)["runtime"] == 600


def test_memory_uses_the_configs_dtype():
    # MiniLM in float32 (the schema's default): 1.5 * (4 * 0.023 + 6 + 4) GB = 15.14e9 B = 14.1 GiB -> 15 GiB
    assert R.job_resources("evaluate", MINILM, 0.1, "local")["mem_mb"] == 15 * 1024
