"""A training checkpoint on disk without pickle: tensors in safetensors, the rest in JSON.

``checkpoint-{step}/`` holds

- ``adapter_model.safetensors``, ``adapter_config.json``: the LoRA adapter (peft's own files);
- ``trainer_state.safetensors``: every tensor of the trainer state (optimizer moments, loss
  parameters, torch/CUDA RNG states), flat, under dotted keys;
- ``trainer_state.json``: ``{"format": 2, "step", "elapsed_s", "run_id", "fingerprint", "files":
  {name: sha256}, "state": tree}`` (``fingerprint`` and other extra keys as the trainer passes them) where ``tree`` is the rest of the state (scheduler state,
  optimizer hyper-parameters, Python and NumPy RNG states as lists and ints) with each tensor
  replaced by ``{"__tensor__": key}``. Dicts with non-string keys (the optimizer's per-parameter
  state is keyed by int) are ``{"__items__": [[key, value], …]}``, tuples ``{"__tuple__": […]}``,
  NumPy arrays ``{"__ndarray__": […], "dtype": …}``.

Reading never runs code from the files: safetensors and JSON are data formats, and nothing here
calls ``torch.load`` or ``pickle``. Every file's SHA-256 is recorded in ``trainer_state.json``
(written last) and checked on reading, so a truncated or altered file is detected before any of
the checkpoint is applied. Checkpoints of the first format (``trainer_state.pt``, a pickle) are
refused: unpickling a file copied from elsewhere can execute arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairrel.io import file_sha256
from pairrel.layout import ADAPTER_CONFIG, ADAPTER_TENSORS, STATE_JSON, STATE_TENSORS
from pairrel.layout import LEGACY_STATE_PICKLE as LEGACY_PICKLE

FORMAT = 2
CHECKED_FILES = (ADAPTER_TENSORS, ADAPTER_CONFIG, STATE_TENSORS)


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read (missing, truncated or altered file)."""


class LegacyCheckpointError(CheckpointError):
    """A checkpoint in the pickle format of earlier pairrel versions: refused, never loaded."""


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    elapsed_s: float
    adapter: dict[str, torch.Tensor]
    state: dict[str, Any]
    # steps skipped as non-finite before this checkpoint (they count against min_applied_fraction)
    skipped_nonfinite_steps: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- encoding

def encode(obj: Any, tensors: dict[str, torch.Tensor], key: str = "state") -> Any:
    """JSON-able tree of ``obj``; its tensors go to ``tensors`` under dotted keys."""
    if isinstance(obj, torch.Tensor):
        # clone: safetensors refuses tensors that share storage, and views must be contiguous
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors, f"{key}.{k}") for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"{key}: cannot store a dict key of type {type(k).__name__}")
        return {"__items__": [[k, encode(v, tensors, f"{key}.{k}")] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{key}: cannot store a value of type {type(obj).__name__} in a checkpoint")


def decode(tree: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """Inverse of :func:`encode`; ``where`` (the JSON file) names errors."""
    if isinstance(tree, list):
        return [decode(v, tensors, where) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        key = tree["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"{where}: refers to tensor {key!r}, absent from {STATE_TENSORS}")
        return tensors[key]
    if "__ndarray__" in tree:
        return np.asarray(tree["__ndarray__"], dtype=np.dtype(tree["dtype"]))
    if "__tuple__" in tree:
        return tuple(decode(v, tensors, where) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {k: decode(v, tensors, where) for k, v in tree["__items__"]}
    return {k: decode(v, tensors, where) for k, v in tree.items()}


# ----------------------------------------------------------------------------- files

def write_state(folder: Path, step: int, elapsed_s: float, run_id: str, state: dict[str, Any], **extra: Any) -> None:
    """Write the trainer state into ``folder`` (which already holds the adapter files).

    ``trainer_state.json`` comes last and records the checksum of every other file.
    """
    from safetensors.torch import save_file

    from pairrel.io import atomic_write_text

    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    save_file(tensors, str(folder / STATE_TENSORS))
    files = {name: file_sha256(folder / name) for name in CHECKED_FILES}
    doc = {"format": FORMAT, "step": step, "elapsed_s": round(elapsed_s, 3), "run_id": run_id, **extra,
           "files": files, "state": tree}
    atomic_write_text(folder / STATE_JSON, json.dumps(doc) + "\n")


def verify_checkpoint(folder: str | Path) -> None:
    """Check a checkpoint's files against the checksums its ``trainer_state.json`` records,
    before it is evaluated or exported: an altered adapter (still a valid safetensors file) or a
    truncated one raises :class:`CheckpointError` naming the file, never scores silently or fails
    deep inside safetensors. Nothing is loaded into memory but one file's bytes at a time."""
    from pairrel.io import read_json

    folder = Path(folder)
    state_json = folder / STATE_JSON
    if not state_json.is_file():
        raise CheckpointError(f"{folder}: not a complete checkpoint (no {STATE_JSON}, written last by the trainer)")
    try:
        files = read_json(state_json)["files"]
        recorded = {str(name): str(digest) for name, digest in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{state_json}: cannot read its file checksums ({err})") from None
    if ADAPTER_TENSORS not in recorded:
        raise CheckpointError(f"{state_json}: lists no checksum for {ADAPTER_TENSORS}")
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {state_json})")
        if file_sha256(path) != expected:
            raise CheckpointError(f"{path}: content differs from the checksum in {state_json} (truncated or "
                                  "altered); retrain the run or restore the file")


def read_checkpoint(folder: Path) -> LoadedCheckpoint:
    """Read and check every file of a checkpoint; nothing is applied to a model here.

    Raises :class:`LegacyCheckpointError` for the pickle format and :class:`CheckpointError`
    (naming the file) for a missing, truncated, altered or unparsable file.
    """
    from safetensors.torch import load as load_tensors

    from pairrel.io import read_json

    folder = Path(folder)
    state_json = folder / STATE_JSON
    if (folder / LEGACY_PICKLE).exists():
        raise LegacyCheckpointError(
            f"{folder}: checkpoint in the old pickle format ({LEGACY_PICKLE}); pairrel no longer "
            "loads pickled trainer state, because unpickling a file can run arbitrary code. "
            f"Delete the run's checkpoint-* folders to retrain this run (or delete {folder / LEGACY_PICKLE} "
            "after checking where it came from and retrain from scratch)."
        )
    try:
        info = read_json(state_json)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{state_json}: cannot read ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise LegacyCheckpointError(
            f"{state_json}: not a format-{FORMAT} pairrel checkpoint (format {info.get('format') if isinstance(info, dict) else None!r}); "
            "retrain the run (delete its checkpoint-* folders)"
        )
    for key in ("step", "elapsed_s", "files", "state"):
        if key not in info:
            raise CheckpointError(f"{state_json}: missing key {key!r}")
    contents = {}
    for name, expected in info["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {state_json})")
        # Read into memory once: hashed and parsed from the same bytes, and no tensor stays
        # backed by a memory map of a file that a later write could truncate.
        contents[name] = path.read_bytes()
        if hashlib.sha256(contents[name]).hexdigest() != expected:
            raise CheckpointError(f"{path}: content differs from the checksum in {state_json} (truncated or altered)")
    tensors_of = {}
    for name in (ADAPTER_TENSORS, STATE_TENSORS):
        if name not in contents:
            raise CheckpointError(f"{state_json}: lists no checksum for {name}")
        try:
            tensors_of[name] = load_tensors(contents[name])
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{folder / name}: cannot read ({err})") from None
    adapter, tensors = tensors_of[ADAPTER_TENSORS], tensors_of[STATE_TENSORS]
    state = decode(info["state"], tensors, str(state_json))
    skipped = [int(step) for step in info.get("skipped_nonfinite_steps") or []]
    return LoadedCheckpoint(folder, int(info["step"]), float(info["elapsed_s"]), adapter, state, skipped)
