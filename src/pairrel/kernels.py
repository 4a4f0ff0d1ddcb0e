"""Fused kernels and ``torch.compile`` for the encoder's backbone: switches that change speed only.

``models.X.kernels: liger`` applies Liger-Kernel (PyPI ``liger-kernel``: Triton kernels for
Llama's RMSNorm, SwiGLU MLP and rotary embedding, fused into one kernel each instead of several
elementwise ones) to the loaded backbone, before LoRA wraps its projections; LoRA's layers stay
ordinary ``nn.Linear`` calls inside the fused MLP. Triton kernels need a CUDA GPU, so asking for
them without one, or without the package, is a configuration error, never a silent fallback.
It is imported only when asked for: pairrel does not depend on it (``pip install liger-kernel``
on the GPU machine).

``models.X.compile: true`` compiles the backbone in place (``nn.Module.compile``, dynamic
shapes, since every batch has its own length), so its parameters, state-dict keys and LoRA
adapters are the same objects as without it.

Neither changes what the model computes beyond floating-point rounding; whether they pay is
measured by ``benchmarks/bench_train_gpu.py`` on a GPU (``benchmarks/run_gpu.sh``).
"""

from __future__ import annotations

import torch

from pairrel.config import ConfigError

KERNEL_CHOICES = ("none", "liger")
# Liger-Kernel's entry point per transformers model type (the decoder models pairrel trains).
_LIGER_APPLY = {"llama": "apply_liger_kernel_to_llama", "mistral": "apply_liger_kernel_to_mistral",
                "qwen2": "apply_liger_kernel_to_qwen2"}


def fuse(model: torch.nn.Module, kernels: str) -> None:
    """Apply ``kernels`` (``none`` or ``liger``) to a loaded backbone, in place."""
    if kernels == "none":
        return
    if kernels not in KERNEL_CHOICES:
        raise ConfigError(f"config key 'models.*.kernels': {kernels!r} is not one of {', '.join(KERNEL_CHOICES)}")
    if not torch.cuda.is_available():
        raise ConfigError("config key 'models.*.kernels': 'liger' needs a CUDA GPU (Triton kernels); "
                          "this machine has none: set kernels: none")
    model_type = getattr(model.config, "model_type", None)
    if model_type not in _LIGER_APPLY:
        raise ConfigError(f"config key 'models.*.kernels': Liger-Kernel has no kernels for model type "
                          f"{model_type!r} here (known: {', '.join(_LIGER_APPLY)}); set kernels: none")
    try:
        import liger_kernel.transformers as liger
    except ImportError:
        raise ConfigError("config key 'models.*.kernels': 'liger' needs the package liger-kernel "
                          "(pip install liger-kernel), which is not installed") from None
    # The embedding model has no LM head: no fused cross-entropy, only the backbone's kernels.
    getattr(liger, _LIGER_APPLY[model_type])(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                              fused_linear_cross_entropy=False, model=model)


def compile_backbone(model: torch.nn.Module, enabled: bool) -> None:
    """``torch.compile`` the backbone in place when ``enabled`` (dynamic shapes)."""
    if enabled:
        model.compile(dynamic=True)
