"""The training loop: LoRA encoder, one loss, batches from prepared sources, resumable.

One run = one resolved config (``run.yaml``, :attr:`pairrel.study.Run.config`), whose folder is
the run directory. It holds

- ``run.yaml``: the resolved config (written by the workflow, or by ``pairrel train --run``);
- ``metrics.jsonl``: one JSON object per logged step (loss, lr, temperature, bias, …);
- ``checkpoint-{step}/``: the LoRA adapter, optimizer, scheduler, loss parameters and RNG
  state, written to a temporary folder and renamed, so a checkpoint is whole or absent;
- ``done``: written after the last checkpoint.

A rerun resumes from the last checkpoint written under the same training fingerprint
(:func:`pairrel.study.training_fingerprint`: the settings that change the weights and the content
of the prepared data); checkpoints of another fingerprint are deleted and the run starts over.
Batch ``k`` is a pure function of (seed, k)
(:class:`pairrel.data.batching.SourceBatcher`), so the resumed run sees exactly the batches the
uninterrupted one would have. SIGTERM (preemption, SLURM time limit) finishes the current step,
writes a checkpoint and exits with status 143.

The learning rate warms up linearly for ``warmup_steps`` and then decays linearly to zero at
``steps`` (the schedule of transformers' Trainer that LLM2Vec's supervised stage runs with).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairrel.config import atomic_write_text
from pairrel.study import CHECKPOINT_PREFIX, checkpoint_dir, checkpoint_steps, training_fingerprint

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a scheduler expects from a terminated job


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step (temporary folders are ignored)."""
    found = []
    for path in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name[len(CHECKPOINT_PREFIX) :]
        if step.isdigit() and (path / "trainer_state.json").exists():
            found.append((int(step), path))
    return sorted(found)


def linear_schedule(warmup_steps: int, total_steps: int):
    """Multiplier of the peak learning rate at a step: linear warm-up, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Preemption:
    """Turns SIGTERM into a flag checked between steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_Preemption":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Trainer:
    """Everything one run needs; :meth:`run` trains to the end or to a preemption."""

    def __init__(self, run_cfg: dict[str, Any], run_dir: str | Path, progress: bool = True) -> None:
        from accelerate import Accelerator

        from pairrel.data.batching import batcher_from_run, load_prepared_source
        from pairrel.encoder import EncoderConfig, build_encoder
        from pairrel.losses import build_loss

        self.cfg = run_cfg
        self.train_cfg = run_cfg["training"]
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.fingerprint = training_fingerprint(run_cfg)
        if self.train_cfg["num_threads"]:
            torch.set_num_threads(int(self.train_cfg["num_threads"]))
        _seed_everything(run_cfg["seed"])

        model_cfg = EncoderConfig.from_dict(run_cfg["model"])
        mixed = "bf16" if model_cfg.dtype == "bfloat16" else "no"
        self.accelerator = Accelerator(mixed_precision=mixed if torch.cuda.is_available() else "no")
        # LoRA weights train in float32; the frozen base may be bf16.
        self.encoder = build_encoder(model_cfg, trainable=True)
        loss_cfg = dict(run_cfg["loss"])
        self.loss_fn = build_loss(loss_cfg.pop("type"), **loss_cfg)
        lr = float(self.train_cfg["learning_rate"])
        loss_lr = self.train_cfg["loss_learning_rate"]
        groups = [
            {"params": [p for p in self.encoder.parameters() if p.requires_grad]},
            # The loss's own scalars (BCE's t' and b) may move faster than the LoRA weights.
            {"params": [p for p in self.loss_fn.parameters() if p.requires_grad], "lr": float(loss_lr or lr), "weight_decay": 0.0},
        ]
        trainable = [p for g in groups for p in g["params"]]
        # Fused AdamW (one kernel for every parameter) needs every parameter on CUDA: move them
        # now (prepare below would move the encoder anyway) and fuse only where that holds.
        self.encoder.to(self.accelerator.device)
        self.loss_fn.to(self.accelerator.device)
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=lr, weight_decay=float(self.train_cfg["weight_decay"]),
            fused=True if trainable and all(p.is_cuda for p in trainable) else None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(int(self.train_cfg["warmup_steps"]), int(self.train_cfg["steps"]))
        )
        # Only the encoder goes under DDP: the loss may have no trainable parameter (softmax,
        # fixed BCE), and its t', b are averaged over ranks by hand (pairrel.distributed).
        self.encoder, self.optimizer = self.accelerator.prepare(self.encoder, self.optimizer)
        self.loss_fn = self.loss_fn.to(self.accelerator.device)
        sources = {name: load_prepared_source(files["parquet"], files["meta"]) for name, files in run_cfg["prepared"].items()}
        self.batcher = batcher_from_run(run_cfg, sources)

    # -- checkpoints -----------------------------------------------------------------------
    def _unwrapped(self):
        return self.accelerator.unwrap_model(self.encoder)

    def save_checkpoint(self, step: int, elapsed: float) -> Path:
        final = checkpoint_dir(self.run_dir, step)
        if not self.accelerator.is_main_process:
            return final
        tmp = self.run_dir / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self._unwrapped().model.save_pretrained(tmp)  # the LoRA adapter only
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "loss": self.loss_fn.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
            },
            tmp / "trainer_state.pt",
        )
        (tmp / "trainer_state.json").write_text(json.dumps(
            {"step": step, "elapsed_s": round(elapsed, 3), "run_id": self.cfg["run_id"], "fingerprint": self.fingerprint}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def load_checkpoint(self, path: Path) -> tuple[int, float]:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self._unwrapped().model, load_file(path / "adapter_model.safetensors"))
        state = torch.load(path / "trainer_state.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loss_fn.load_state_dict(state["loss"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        info = json.loads((path / "trainer_state.json").read_text())
        return int(info["step"]), float(info.get("elapsed_s", 0.0))

    def _foreign_checkpoints(self) -> list[Path]:
        """Checkpoints written under another training fingerprint (other settings or data)."""
        foreign = []
        for _, path in checkpoints(self.run_dir):
            try:
                saved = json.loads((path / "trainer_state.json").read_text()).get("fingerprint")
            except ValueError:
                saved = None
            if saved != self.fingerprint:
                foreign.append(path)
        return foreign

    def _start_fresh(self, foreign: list[Path]) -> None:
        print(f"{self.run_dir}: {len(foreign)} checkpoint(s) were trained with other settings or data; "
              "training from scratch", file=sys.stderr)
        for path in foreign:
            shutil.rmtree(path)
        for name in ("metrics.jsonl", "done"):
            (self.run_dir / name).unlink(missing_ok=True)

    def _truncate_metrics(self, last_step: int) -> None:
        """Drop logged steps after the checkpoint we resume from (they will be redone)."""
        metrics = self.run_dir / "metrics.jsonl"
        if not metrics.exists():
            return
        kept = [line for line in metrics.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
        atomic_write_text(metrics, "".join(line + "\n" for line in kept))

    # -- the loop --------------------------------------------------------------------------
    def _encode_fn(self, texts: list[str], instruction: str = ""):
        """Tokenize ``texts`` once; returns (token counts, ``encode(rows)``) embedding chunks of
        those rows through the (possibly DDP-wrapped) encoder (:func:`pairrel.gradcache.row_encoder`)."""
        from pairrel.gradcache import row_encoder

        tokens = self._unwrapped().tokenize(list(texts), instruction)
        return row_encoder(tokens, self.encoder, self.accelerator.device)

    def step(self, batch) -> torch.Tensor:
        """One optimizer step on ``batch``; returns the loss of the whole (global) batch as a
        0-dim tensor on the device: nothing in the step waits for the device, so the caller
        should read it (``float``) only when it logs.

        On several processes every rank builds the same global batch and takes its shard of
        queries and documents; documents are gathered with gradients inside the loss, and
        the loss is weighted so DDP's average is the single-process gradient
        (:mod:`pairrel.distributed`). GradCache chunks come from ``training.gradcache_tokens``
        (or the older ``training.gradcache_chunk``): :func:`pairrel.gradcache.chunks_from_config`.
        """
        import functools

        from pairrel import distributed
        from pairrel.gradcache import chunks_from_config, grad_cache_step

        queries, docs, targets = batch.queries, batch.docs, batch.targets
        gather = no_sync = None
        if self.accelerator.num_processes > 1:
            q_shard, d_shard = distributed.shard(len(queries)), distributed.shard(len(docs))
            queries, docs, targets = queries[q_shard], docs[d_shard], targets[q_shard]
            gather = functools.partial(distributed.all_gather_with_grad, sizes=distributed.shard_sizes(len(batch.docs)))
            no_sync = self.encoder.no_sync
        query_lengths, encode_queries = self._encode_fn(queries, batch.instruction)
        # symmetric sources instruct documents too (batch.doc_instruction; "" otherwise)
        doc_lengths, encode_docs = self._encode_fn(docs, batch.doc_instruction)
        loss = grad_cache_step(
            encode_queries,
            encode_docs,
            range(len(queries)),
            range(len(docs)),
            targets.to(self.accelerator.device, non_blocking=True),
            self.loss_fn,
            chunks_from_config(self.train_cfg, query_lengths, doc_lengths),
            gather=gather,
            no_sync=no_sync,
        )
        distributed.average_gradients(self.loss_fn.parameters())
        max_norm = self.train_cfg["max_grad_norm"]
        if max_norm:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _any_rank(self, flag: bool) -> bool:
        """True on every process when any got SIGTERM, so all checkpoint and stop together."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)

    def run(self) -> int:
        """Train to ``training.steps``; returns 0, or 143 after a checkpoint on SIGTERM."""
        from tqdm.auto import tqdm

        main = self.accelerator.is_main_process
        self.run_dir.mkdir(parents=True, exist_ok=True)
        foreign = self._foreign_checkpoints()
        if foreign and main:
            self._start_fresh(foreign)
        self.accelerator.wait_for_everyone()
        total = int(self.train_cfg["steps"])
        checkpoint_at = set(checkpoint_steps(self.train_cfg))
        log_every = int(self.train_cfg["log_every"])
        start, elapsed = 0, 0.0
        saved = checkpoints(self.run_dir)
        if saved:
            start, elapsed = self.load_checkpoint(saved[-1][1])
            if main:
                self._truncate_metrics(start)
        t0 = time.perf_counter() - elapsed
        bar = tqdm(total=total, initial=start, desc=self.cfg["run_id"], disable=not (self.progress and main), dynamic_ncols=True)
        log_path = self.run_dir / "metrics.jsonl" if main else Path(os.devnull)  # one writer
        with _Preemption() as preemption, open(log_path, "a") as log:
            for batch in self.batcher.iter_steps(total, start_step=start):
                step = batch.step + 1  # batch k (0-based) completes optimizer step k + 1
                lr = self.scheduler.get_last_lr()[0]
                loss = float(self.step(batch))
                if step % log_every == 0 or step == total:
                    record = {"step": step, "loss": loss, "lr": lr, "source": batch.source, "n_queries": len(batch.queries), "n_docs": len(batch.docs)}
                    record.update(self.loss_fn.log_values(batch.targets))
                    record["elapsed_s"] = round(time.perf_counter() - t0, 3)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if step in checkpoint_at:
                    self.save_checkpoint(step, time.perf_counter() - t0)
                if self._any_rank(preemption.requested) and step < total:
                    self.save_checkpoint(step, time.perf_counter() - t0)
                    bar.close()
                    return PREEMPTED_EXIT_CODE
        bar.close()
        if main:
            atomic_write_text(
                self.run_dir / "done", json.dumps({"steps": total, "elapsed_s": round(time.perf_counter() - t0, 3)}) + "\n"
            )
        return 0

