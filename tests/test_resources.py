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


def test_runtime_of_8b_jobs():
    load = 5 + 8.03
    # train: 1.2 h/B * 8.03 = 9.636 GPU-h; 13.03 + 1.5 * 60 * 9.636 = 880.27 -> 881, + 10 minutes
    # of SIGTERM lead = 891
    train = R.job_resources("train", {"params_b": 8.03, "dtype": "bfloat16"}, training_cfg={"steps": 1000, "batch_size": 512})
    assert train == {"mem_mb": 37 * 1024, "runtime": 891, "gpu": 1, "slurm_extra": "--signal=TERM@600"}
    # Retrieval: 6 h/B * 8.03 = 48.18 GPU-h; 13.03 + 1.5 * 60 * 48.18 = 4349.23 -> 4350
    assert R.job_resources("evaluate", {"params_b": 8.03, "dtype": "bfloat16"}, "Retrieval")["runtime"] == 4350
    # STS: 0.02 * 8.03 = 0.1606 GPU-h; 13.03 + 14.454 = 27.48 -> 28
    assert R.job_resources("evaluate", {"params_b": 8.03, "dtype": "bfloat16"}, "STS")["runtime"] == 28
    assert R.runtime_minutes(8.03, 9.636, attempt=2) == 1761  # 2 * 880.27 = 1760.54
    assert R.runtime_minutes(8.03, 48.18, max_minutes=2880) == 2880


def test_estimated_hours_replace_the_fallback_and_gpus_divide_them():
    # 10 GPU-h on 4 GPUs: 13.03 + 1.5 * 60 * 10 / 4 = 238.03 -> 239, + 10 SIGTERM lead
    res = R.job_resources("train", {"params_b": 8.03, "dtype": "bfloat16"}, training_cfg={"gpus": 4}, estimated_hours=10.0)
    assert res == {"mem_mb": 37 * 1024, "runtime": 249, "gpu": 4, "slurm_extra": "--signal=TERM@600"}
    # half the recipe's queries: half the fallback hours, 0.6 * 8.03 = 4.818; 13.03 + 433.62 = 446.65
    half = R.job_resources("train", {"params_b": 8.03, "dtype": "bfloat16"}, training_cfg={"steps": 500, "batch_size": 512})
    assert half["runtime"] == 457
    # groups evaluated by one job add their hours: (0.02 + 0.02) * 8.03 = 0.3212; 13.03 + 28.908 -> 42
    assert R.job_resources("evaluate", {"params_b": 8.03, "dtype": "bfloat16"}, ["STS", "PairClassification"])["runtime"] == 42
    with pytest.raises(ValueError, match="training.gpus"):
        R.gpus("train", {"gpus": 0})


def test_training_time_leaves_the_sigterm_lead_free_even_for_a_tiny_model():
    # MiniLM (0.023 B), 60 steps of 16: load 5.023 + 1.5 * 60 * (1.2 * 0.023 * 960 / 512000) =
    # 5.023 + 0.0047 -> 6 minutes of work, + 10 minutes before which SIGTERM comes: 16
    tiny = R.job_resources("train", {"params_b": 0.023, "dtype": "bfloat16"}, training_cfg={"steps": 60, "batch_size": 16})
    assert tiny["runtime"] == 16 and tiny["slurm_extra"] == "--signal=TERM@600"
    assert R.job_resources("train", {"params_b": 0.023, "dtype": "bfloat16"}, training_cfg={"steps": 60, "batch_size": 16},
                           attempt=2)["runtime"] == 11 + 10  # ceil(2 * 5.028) = 11
    # evaluation takes SLURM's default (SIGTERM at the limit): nothing added, no slurm_extra;
    # STS: 5.023 + 1.5 * 60 * 0.02 * 0.023 = 5.06 -> 6
    sts = R.job_resources("evaluate", {"params_b": 0.023, "dtype": "bfloat16"}, "STS")
    assert sts["runtime"] == 6 and sts["slurm_extra"] == ""
    # the cap covers the whole request
    assert R.job_resources("train", {"params_b": 8.03, "dtype": "bfloat16"}, training_cfg={"steps": 1000, "batch_size": 512},
                           max_minutes=600)["runtime"] == 600
