"""The training loop: LoRA encoder, one loss, batches from prepared sources, resumable.

One run = one resolved config (``run.yaml``, :attr:`pairrel.study.Run.config`, read as
:class:`pairrel.settings.RunSettings`), whose folder is the run directory
(:class:`pairrel.run_folder.RunFolder`: its lock, checkpoints, ``metrics.jsonl`` and ``done``).
``run.yaml`` itself is written by the workflow, or by ``pairrel train --run``. A checkpoint
holds the LoRA adapter, optimizer, scheduler, loss parameters and RNG state without pickle
(:mod:`pairrel.trainer_state`); every file's checksum is checked before it is loaded.

A rerun resumes from the last readable checkpoint written under the same training fingerprint
(:func:`pairrel.study.training_fingerprint`: the settings that change the weights and the content
of the prepared data); checkpoints of another fingerprint are deleted and the run starts over.
A corrupt checkpoint is set aside with a warning and the previous one used; ``metrics.jsonl``
is truncated to the step resumed from (to nothing without a checkpoint). Batch ``k`` is a pure
function of (seed, k) (:class:`pairrel.data.batching.SourceBatcher`), so the resumed run sees
exactly the batches the uninterrupted one would have. SIGTERM (preemption, SLURM time limit)
finishes the current step, writes its checkpoint (once) and exits with status 143.

A non-finite loss or gradient stops the run before the optimizer update, with an error naming
the step (NonFiniteError): nothing of that step is saved and ``done`` is not written. With
``training.skip_nonfinite_batches: true`` such a batch is skipped instead (logged as a warning,
listed in ``done``), up to MAX_CONSECUTIVE_SKIPS in a row.

The learning rate warms up linearly for ``warmup_steps`` and then decays linearly to zero at
``steps`` (the schedule of transformers' Trainer that LLM2Vec's supervised stage runs with).
"""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairrel.exit_status import EXIT_TERMINATED
from pairrel.layout import CHECKPOINT_PREFIX
from pairrel.run_folder import RunFolder, checkpoints  # noqa: F401 (checkpoints: asked of pairrel.train too)
from pairrel.settings import RunSettings
from pairrel.study import checkpoint_steps, training_fingerprint
from pairrel.trainer_state import CheckpointError

PREEMPTED_EXIT_CODE = EXIT_TERMINATED  # 128 + SIGTERM, what a scheduler expects from a terminated job
# With training.skip_nonfinite_batches, this many non-finite batches in a row stop the run: the
# weights are unchanged by skipped batches, so a longer streak is a setting, not a bad batch.
MAX_CONSECUTIVE_SKIPS = 10


class NonFiniteError(ValueError):
    """The loss or a gradient became NaN/inf: the run stops, naming the step."""


class _NonFiniteStep(Exception):
    """Raised inside the optimizer's step pre-hook to stop an update; carries what was seen."""

    def __init__(self, losses: list[float], bad_grads: int, n_grads: int) -> None:
        self.losses, self.bad_grads, self.n_grads = losses, bad_grads, n_grads
        super().__init__()

    def __str__(self) -> str:
        loss = ", ".join(f"{v:g}" for v in self.losses) or "not computed"
        return f"non-finite loss or gradients (loss {loss}; {self.bad_grads} of {self.n_grads} gradients non-finite)"


def _check_applied(run_dir: Path, total: int, skipped: list[int], min_fraction: float) -> None:
    """A run that applied no update, or fewer than ``training.min_applied_fraction`` of its steps
    (the rest skipped as non-finite), is no trained model: it fails and ``done`` is not written,
    so it is never evaluated or shown as a trained row (its weights are nearly the base model's)."""
    applied = total - len(skipped)
    if applied <= 0 or applied < min_fraction * total:
        shown = ", ".join(map(str, skipped[:10])) + (", …" if len(skipped) > 10 else "")
        raise NonFiniteError(
            f"{run_dir}: only {applied} of {total} steps applied an update ({len(skipped)} skipped as non-finite: "
            f"steps {shown}), fewer than training.min_applied_fraction = {min_fraction:g} of them; the run is not "
            "marked done and is not evaluated. Lower training.learning_rate or fix the loss settings "
            "(e.g. a softmax temperature too small for float32)")


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
    """The optimisation of one run (model, loss, optimizer, schedule, batches); :meth:`run`
    trains to the end or to a preemption, its :class:`~pairrel.run_folder.RunFolder` keeping
    the folder's files."""

    def __init__(self, run_cfg: dict[str, Any], run_dir: str | Path, progress: bool = True) -> None:
        from accelerate import Accelerator

        from pairrel.data.batching import batcher_from_run, load_prepared_source
        from pairrel.encoder import EncoderConfig, build_encoder
        from pairrel.losses import build_loss

        self.cfg = run_cfg
        self.settings = RunSettings.from_dict(run_cfg)  # every key there: a clear error otherwise
        self.train_cfg = run_cfg["training"]
        self.training = training = self.settings.training
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.fingerprint = training_fingerprint(run_cfg)
        self._skipped: list[int] = []  # steps skipped as non-finite so far (saved in each checkpoint)
        if training.num_threads:
            torch.set_num_threads(training.num_threads)
        _seed_everything(self.settings.seed)

        model_cfg = EncoderConfig.from_dict(run_cfg["model"])
        mixed = "bf16" if model_cfg.dtype == "bfloat16" else "no"
        self.accelerator = Accelerator(mixed_precision=mixed if torch.cuda.is_available() else "no")
        self.folder = RunFolder(self.run_dir, self.fingerprint, self.settings.run_id, main=self.accelerator.is_main_process)
        # LoRA weights train in float32; the frozen base may be bf16.
        self.encoder = build_encoder(model_cfg, trainable=True)
        self.loss_fn = build_loss(self.settings.loss)
        lr = float(training.learning_rate)
        # a loss variant's own rate (ablation) wins, then training.loss_learning_rate, then lr
        loss_lr = self.settings.loss.own_learning_rate or training.loss_learning_rate or lr
        groups = [
            {"params": [p for p in self.encoder.parameters() if p.requires_grad]},
            # The loss's own scalars (BCE's t' and b) may move faster than the LoRA weights.
            {"params": [p for p in self.loss_fn.parameters() if p.requires_grad], "lr": float(loss_lr), "weight_decay": 0.0},
        ]
        trainable = [p for g in groups for p in g["params"]]
        # Fused AdamW (one kernel for every parameter) needs every parameter on CUDA: move them
        # now (prepare below would move the encoder anyway) and fuse only where that holds.
        self.encoder.to(self.accelerator.device)
        self.loss_fn.to(self.accelerator.device)
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=lr, weight_decay=float(training.weight_decay),
            fused=True if trainable and all(p.is_cuda for p in trainable) else None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(training.warmup_steps, training.steps)
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

    def _state_tree(self) -> dict:
        """Everything but the adapter that a bitwise resume needs (see pairrel.trainer_state)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def _check_finite_parameters(self, step: int) -> None:
        """A checkpoint is never written with non-finite weights (the guard of last resort)."""
        named = list(self._unwrapped().named_parameters()) + [(f"loss.{n}", p) for n, p in self.loss_fn.named_parameters()]
        bad = [name for name, param in named if param.requires_grad and not torch.isfinite(param).all()]
        if bad:
            raise NonFiniteError(f"{self.run_dir}: step {step}: {len(bad)} trainable tensor(s) are not finite "
                                 f"(e.g. {bad[0]}); no checkpoint written for this step")

    def save_checkpoint(self, step: int, elapsed: float) -> Path:
        """``checkpoint-{step}/`` of the current weights and state (:meth:`RunFolder.write_checkpoint`)."""
        self._check_finite_parameters(step)
        if not self.folder.main:  # one process writes (and builds the state it writes)
            return self.folder.checkpoint(step)
        return self.folder.write_checkpoint(step, elapsed, self._unwrapped().model.save_pretrained,  # the LoRA adapter
                                            self._state_tree(), self._skipped)

    def load_checkpoint(self, path: Path) -> tuple[int, float]:
        """Read (every file checked first), then apply a checkpoint; returns (step, elapsed_s)."""
        from pairrel.trainer_state import read_checkpoint

        return self._apply_checkpoint(read_checkpoint(path))

    def _apply_checkpoint(self, loaded) -> tuple[int, float]:
        from peft import set_peft_model_state_dict

        state = loaded.state
        try:
            set_peft_model_state_dict(self._unwrapped().model, loaded.adapter)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.loss_fn.load_state_dict(state["loss"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{loaded.path}: does not fit this run's model/optimizer ({err})") from None
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        return loaded.step, loaded.elapsed_s

    def _install_nonfinite_guard(self):
        """Check loss and gradients before every optimizer update (a step pre-hook).

        The loss module's forward hook records the step's loss; the optimizer's step pre-hook
        runs after the backward pass and before any weight changes, so a bad step is stopped
        while the weights are still those of the previous step. Returns the hook handles.
        """
        inner = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's wrapper

        def record_loss(module, inputs, output):
            self._step_losses.append(output.detach())

        def check(optimizer, args, kwargs):
            bad_loss = any(not torch.isfinite(loss).all() for loss in self._step_losses)
            grads = [(i, p.grad) for i, g in enumerate(optimizer.param_groups) for p in g["params"] if p.grad is not None]
            bad_grads = sum(int(not torch.isfinite(grad).all()) for _, grad in grads)
            if self._any_rank(bad_loss or bad_grads > 0):
                losses = [float(loss) for loss in self._step_losses]
                raise _NonFiniteStep(losses, bad_grads, len(grads))

        return [self.loss_fn.register_forward_hook(record_loss), inner.register_step_pre_hook(check)]

    # -- the loop --------------------------------------------------------------------------
    def _encode_fn(self, texts: list[str], instruction: str | list[str] = ""):
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
        # symmetric sources instruct documents too; a pooled source gives one instruction per text
        instruction, doc_instruction = batch.instruction, batch.doc_instruction
        gather = no_sync = None
        if self.accelerator.num_processes > 1:
            q_shard, d_shard = distributed.shard(len(queries)), distributed.shard(len(docs))
            queries, docs, targets = queries[q_shard], docs[d_shard], targets[q_shard]
            if not isinstance(instruction, str):
                instruction = instruction[q_shard]
            if not isinstance(doc_instruction, str):
                doc_instruction = doc_instruction[d_shard]
            gather = functools.partial(distributed.all_gather_with_grad, sizes=distributed.shard_sizes(len(batch.docs)))
            no_sync = self.encoder.no_sync
        query_lengths, encode_queries = self._encode_fn(queries, instruction)
        doc_lengths, encode_docs = self._encode_fn(docs, doc_instruction)
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
        max_norm = self.training.max_grad_norm
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
        """Train to ``training.steps``; returns 0, or 143 after a checkpoint on SIGTERM.

        Raises NonFiniteError (a non-finite loss or gradient, naming the step; nothing of that
        step is saved and ``done`` is not written), RunLockedError (another live trainer holds
        the run folder) and CheckpointError (an unusable checkpoint, naming its path).
        """
        with self.folder.locked():
            hooks = self._install_nonfinite_guard()
            try:
                return self._run(self.folder.main)
            finally:
                for hook in hooks:
                    hook.remove()

    def _run(self, main: bool) -> int:
        from tqdm.auto import tqdm

        from pairrel.progress import StepLog

        training = self.training
        self.folder.start()
        self.accelerator.wait_for_everyone()
        total = training.steps
        checkpoint_at = set(checkpoint_steps(self.train_cfg))
        start, elapsed = 0, 0.0
        loaded = self.folder.latest_checkpoint()
        if loaded is not None:
            start, elapsed = self._apply_checkpoint(loaded)
            if main:
                print(f"{self.run_dir}: resuming from {loaded.path} (step {start} of {total})", file=sys.stderr)
        self.folder.truncate_metrics(start)  # also without a checkpoint: rows of a killed run go
        t0 = time.perf_counter() - elapsed
        # a terminal gets tqdm's bar; a log file (every Snakemake job) a line every few seconds
        to_terminal = sys.stderr.isatty()
        run_id = self.settings.run_id
        bar = tqdm(total=total, initial=start, desc=run_id, disable=not (self.progress and main and to_terminal),
                   dynamic_ncols=True)
        lines = StepLog(run_id, total, start) if self.progress and main and not to_terminal else None
        # steps skipped before the resume count too (each checkpoint records them)
        skipped: list[int] = list(loaded.skipped_nonfinite_steps) if loaded is not None else []
        self._skipped = skipped
        consecutive_skips = 0
        saved_step = start  # a checkpoint of this step exists: never write it twice
        with _Preemption() as preemption, self.folder.metrics_log() as log:
            for batch in self.batcher.iter_steps(total, start_step=start):
                step = batch.step + 1  # batch k (0-based) completes optimizer step k + 1
                lr = self.scheduler.get_last_lr()[0]
                self._step_losses = []
                try:
                    loss = float(self.step(batch))
                except _NonFiniteStep as bad:
                    self.optimizer.zero_grad(set_to_none=True)
                    message = (f"{self.run_dir}: step {step} (source {batch.source}): {bad}; the weights were not "
                               f"updated and nothing of this step was saved (last checkpoint: "
                               f"{f'step {saved_step}' if saved_step else 'none'})")
                    if not training.skip_nonfinite_batches:
                        bar.close()
                        raise NonFiniteError(message + "; lower training.learning_rate or fix the loss settings, "
                                             "or set training.skip_nonfinite_batches: true to skip such batches") from None
                    consecutive_skips += 1
                    if consecutive_skips > MAX_CONSECUTIVE_SKIPS:
                        bar.close()
                        raise NonFiniteError(f"{message}; {consecutive_skips} batches in a row were non-finite, "
                                             "so the run cannot recover by skipping") from None
                    print(f"warning: {message}; batch skipped (training.skip_nonfinite_batches)", file=sys.stderr)
                    skipped.append(step)
                    was_skipped = True
                    self.scheduler.step()  # the schedule stays a function of the step number
                    loss = float("nan")
                else:
                    consecutive_skips, was_skipped = 0, False
                if main and not was_skipped and (step % training.log_every == 0 or step == total):
                    record = {"step": step, "loss": loss, "lr": lr, "source": batch.source, "n_queries": len(batch.queries), "n_docs": len(batch.docs)}
                    record.update(self.loss_fn.log_values(batch.targets))
                    record["elapsed_s"] = round(time.perf_counter() - t0, 3)
                    log(record)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if lines is not None:
                    lines.update(step, loss)
                if step in checkpoint_at:
                    self.save_checkpoint(step, time.perf_counter() - t0)
                    saved_step = step
                if self._any_rank(preemption.requested) and step < total:
                    if saved_step != step:
                        self.save_checkpoint(step, time.perf_counter() - t0)
                    bar.close()
                    return PREEMPTED_EXIT_CODE
        bar.close()
        _check_applied(self.run_dir, total, skipped, training.min_applied_fraction)
        self.folder.mark_done(total, time.perf_counter() - t0, skipped)
        if lines is not None:  # (main process only)
            lines.close(checkpoints=f"{self.run_dir}/{CHECKPOINT_PREFIX}{{{','.join(map(str, sorted(checkpoint_at)))}}}")
        return 0
