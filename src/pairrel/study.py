"""The study: every run of a config, and the one owner of run ids, paths and result identity.

A :class:`Study` is built once from a validated, defaults-filled config
(:func:`pairrel.config.load_config`). The Snakefile, the CLI, the trainer, evaluation and the
report all ask it; no other module builds a run id. Every path pattern and mteb name is
:mod:`pairrel.layout`'s; a study fills them with its runs' values (``Study.layout``).

**Run ids** read ``model~M/data~D/loss~L/labels~G[/fold~K]/seed~S`` (the fold part only for data
mixes with a K-fold source). **Result identity**: each checkpoint is its own mteb model, named
``pairrel/<run slug>.step-<N>``, whose revision is a fingerprint of its adapter weights and
encoder settings (:func:`checkpoint_revision`), so a retrained run can never show the scores of
its old weights, and mteb's ``ResultCache`` loads every checkpoint as a model of its own. Base
models are ``pairrel/<model>`` at revision ``base-<fingerprint of the model config>``.

Which tasks each checkpoint runs (``Study.eval_plan``) and every job of the workflow are
:mod:`pairrel.jobs`'.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairrel import layout
from pairrel.config import ConfigError, deep_merge, load_config
from pairrel.layout import RUN_ID_PATTERN, Layout, checkpoint_dir
from pairrel.io import file_sha256

if TYPE_CHECKING:
    from pairrel.settings import RunSettings

# Training settings that leave the weights unchanged: changing them never retrains a run.
# (checkpoint_every is not one: a resumed run would lack the new intermediate checkpoints.)
NEUTRAL_TRAINING_KEYS = ("num_threads", "log_every", "skip_nonfinite_batches", "min_applied_fraction", "gpus",
                         "gradcache_tokens", "gradcache_chunk")
# current_revision's answer when no result of a checkpoint can be current (matches no revision).
STALE = "<stale>"
# Settings that only name things in tables and figures.
DISPLAY_KEYS = ("display",)
# Model settings that change speed, not the vectors (pairrel.packing, pairrel.kernels): no
# checkpoint revision or training fingerprint includes them.
SPEED_KEYS = ("packing", "kernels", "compile")


def canonical_json(obj: Any) -> str:
    """The JSON text a fingerprint is taken of: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _without(tree: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in tree.items() if k not in keys}


def encoder_settings(model_cfg: dict) -> dict:
    """The parts of a model config that change its embeddings (display names and speed settings do not)."""
    return _without(model_cfg, DISPLAY_KEYS + SPEED_KEYS)


def training_fingerprint(run_cfg: dict) -> str:
    """SHA-256 of everything that makes a run's weights: the resolved config (minus settings that
    leave the weights unchanged, paths and names) and the content of its prepared data files.

    A checkpoint records it; a rerun whose fingerprint differs trains from scratch.
    """
    weights_cfg = {
        "model": encoder_settings(run_cfg["model"]),
        "data": run_cfg["data"],
        "loss": _without(run_cfg["loss"], DISPLAY_KEYS),
        "labels": run_cfg["labels"],
        "seed": run_cfg["seed"],
        "fold": run_cfg.get("fold"),
        "training": _without(run_cfg["training"], NEUTRAL_TRAINING_KEYS),
        "prepared": {name: file_sha256(files["parquet"]) for name, files in sorted(run_cfg["prepared"].items())},
    }
    return sha256_text(canonical_json(weights_cfg))


def checkpoint_revision(checkpoint_dir: str | Path, model_cfg: dict) -> str:
    """The mteb revision of a checkpoint: 12 hex digits of SHA-256 over its adapter weights and
    the encoder settings it is evaluated with. Same weights and settings, same revision."""
    weights = Path(checkpoint_dir) / layout.ADAPTER_TENSORS
    if not weights.is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: not a checkpoint (no {layout.ADAPTER_TENSORS})")
    return sha256_text(_weights_sha256(weights) + canonical_json(encoder_settings(model_cfg)))[:12]


def _weights_sha256(weights: Path) -> str:
    """SHA-256 of a checkpoint's adapter: the one its trainer_state.json records (the trainer
    checks it on every read), else read from the file (an 8B adapter is ~170 MB)."""
    try:
        recorded = json.loads((weights.parent / layout.STATE_JSON).read_text())["files"][weights.name]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if isinstance(recorded, str) and len(recorded) == 64 and weights.stat().st_size > (1 << 24):
        return recorded
    return file_sha256(weights)


def base_revision(model_cfg: dict) -> str:
    """The mteb revision of an untrained base model: a fingerprint of its config."""
    return "base-" + sha256_text(canonical_json(encoder_settings(model_cfg)))[:10]


def checkpoint_steps(training: dict) -> list[int]:
    """The steps at which a run writes checkpoints: every ``checkpoint_every`` and the last."""
    total = int(training["steps"])
    every = int(training["checkpoint_every"] or total)
    return sorted(set(range(every, total + 1, every)) | {total})


def parse_run_id(text: str) -> dict[str, Any]:
    """``model~…/…/seed~…`` -> grid values; raises :class:`ConfigError` for a malformed id."""
    if not re.fullmatch(RUN_ID_PATTERN, text.strip("/")):
        raise ConfigError(f"malformed run id '{text}': expected model~M/data~D/loss~L/labels~G[/fold~K]/seed~S")
    values: dict[str, Any] = {}
    for part in text.strip("/").split("/"):
        key, _, value = part.partition("~")
        values[key] = int(value) if key in ("seed", "fold") else value
    return values


@dataclass(frozen=True)
class Run:
    """One training run: a point of the grid, and everything that is named after it."""

    study: "Study" = field(repr=False, compare=False)
    model: str
    data: str
    loss: str
    labels: str
    seed: int
    fold: int | None = None

    @property
    def grid(self) -> dict[str, Any]:
        """Grid values in run-id order; no ``fold`` for mixes without a K-fold source."""
        values = {"model": self.model, "data": self.data, "loss": self.loss, "labels": self.labels,
                  "fold": self.fold, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}

    @property
    def id(self) -> str:
        return "/".join(f"{k}~{v}" for k, v in self.grid.items())

    @property
    def slug(self) -> str:
        """The run id as one path component: ``model-minilm.data-quickstart.…``."""
        return ".".join(f"{k}-{v}" for k, v in self.grid.items())

    @property
    def dir(self) -> Path:
        return self.study.layout.path(layout.RUN_DIR, run=self.id)

    @property
    def config_file(self) -> Path:
        """``run.yaml``: the resolved config of the run's last training job (for readers)."""
        return self.dir / layout.RUN_CONFIG

    @cached_property  # the DAG asks it of every job; the config of a Study never changes
    def resolved_file(self) -> Path:
        """The resolved config, named by its content: a changed setting is another input file of
        the training job, so Snakemake retrains the run (and keeps the history of settings)."""
        return self.study.layout.path(layout.RESOLVED_RUN, run=self.id, hash=sha256_text(canonical_json(self.config))[:12])

    @property
    def done_file(self) -> Path:
        return self.dir / layout.DONE

    def checkpoint(self, step: int) -> Path:
        return checkpoint_dir(self.dir, step)

    @property
    def training(self) -> dict[str, Any]:
        """The global ``training:`` with the data mix's own ``training:`` merged over it."""
        return self.study.training_for(self.data)

    @cached_property  # asked of every evaluation job while the DAG is planned
    def steps(self) -> list[int]:
        return checkpoint_steps(self.training)

    @property
    def final_step(self) -> int:
        return self.steps[-1]

    @property
    def eval_steps(self) -> list[int]:
        return self.steps if self.study.evaluation["checkpoints"] == "all" else [self.final_step]

    def full_benchmark(self, step: int) -> bool:
        """Whether checkpoint ``step`` runs ``evaluation.tasks`` (the full benchmark) rather than
        ``evaluation.intermediate_tasks``: the final step of a run that
        ``evaluation.full_benchmark`` selects (:meth:`pairrel.jobs.EvaluationPlan.gets_full_benchmark`)."""
        return step == self.final_step and self.study.eval_plan.gets_full_benchmark(self)

    def eval_marker(self, step: int, group: str) -> Path:
        return self.study.layout.path(layout.EVAL_MARKER, run=self.id, step=step, group=group)

    def mteb_name(self, step: int) -> str:
        return layout.checkpoint_model_name(self.slug, step)

    @property
    def prepared(self) -> dict[str, dict[str, str]]:
        """Prepared files of each source of the run's mix (K-fold sources: the run's fold)."""
        return {source: {"parquet": str(self.study.prepared(self.data, source, self.fold)),
                         "meta": str(self.study.prepared(self.data, source, self.fold, layout.META))}
                for source in self.study.cfg["data"][self.data]["sources"]}

    @property
    def settings(self) -> "RunSettings":
        """:attr:`config` as typed settings (:class:`pairrel.settings.RunSettings`)."""
        from pairrel.settings import RunSettings

        return RunSettings.from_dict(self.config)

    @property
    def config(self) -> dict[str, Any]:
        """The fully resolved run config (``run.yaml``): everything training needs, nothing else."""
        cfg = self.study.cfg
        return {
            "experiment": self.study.experiment,
            "run_id": self.id,
            "grid": self.grid,
            "model": copy.deepcopy(cfg["models"][self.model]),
            "data": {k: copy.deepcopy(v) for k, v in cfg["data"][self.data].items() if k != "training"},
            "loss": copy.deepcopy(cfg["losses"][self.loss]),
            "labels": self.labels,
            "seed": self.seed,
            "fold": self.fold,
            "training": self.training,
            "prepared": self.prepared,
            "dir": str(self.dir),
        }


class Study:
    """A validated config and everything derived from it: runs, paths, result identity, and its
    evaluation plan (``eval_plan``, :class:`pairrel.jobs.EvaluationPlan`)."""

    def __init__(self, cfg: dict[str, Any], root: str | Path = ".") -> None:
        """``cfg`` must come from :func:`pairrel.config.load_config` (validated, defaults filled)."""
        self.cfg = cfg
        self.root = Path(root)
        self.experiment: str = cfg["experiment"]
        self.layout = Layout(self.root, self.experiment)
        self.results, self.figures = self.layout.results, self.layout.figures
        self.evaluation: dict[str, Any] = cfg["evaluation"]
        self.runs: list[Run] = self._expand()
        self._by_id = {run.id: run for run in self.runs}
        from pairrel.jobs.evaluation import EvaluationPlan  # checks the evaluation keys

        self.eval_plan = EvaluationPlan(self)

    @classmethod
    def from_files(cls, *paths: str | Path, overrides: dict | None = None, root: str | Path = ".") -> "Study":
        return cls(load_config(*paths, overrides=overrides), root=root)

    # -- the grid ----------------------------------------------------------------------------
    def folds_of(self, data: str) -> int | None:
        """K of the mix's K-fold source, or None (a mix has at most one K)."""
        ks = {spec["folds"] for spec in self.cfg["data"][data]["sources"].values() if spec.get("folds")}
        if len(ks) > 1:
            raise ConfigError(f"config key 'data.{data}.sources': K-fold sources of one mix must share K (found {sorted(ks)})")
        return ks.pop() if ks else None

    def fold_values(self, data: str) -> list[int | None]:
        """The folds of mix ``data`` on the grid (``grid.folds``); ``[None]`` for a mix without folds."""
        k = self.folds_of(data)
        if k is None:
            return [None]
        wanted = self.cfg["grid"]["folds"]
        if wanted == "all":
            return list(range(k))
        bad = [f for f in wanted if f >= k]
        if bad:
            raise ConfigError(f"config key 'grid.folds': fold {bad[0]} does not exist in data mix '{data}' (K = {k})")
        return list(wanted)

    def _expand(self) -> list[Run]:
        grid = self.cfg["grid"]
        runs = []
        for model in grid["models"]:
            for data in grid["data"]:
                for loss in grid["losses"]:
                    for labels in grid["labels"]:
                        for fold in self.fold_values(data):
                            for seed in grid["seeds"]:
                                run = Run(self, model, data, loss, labels, int(seed), fold)
                                if not self._excluded(run):
                                    runs.append(run)
        if not runs:
            raise ConfigError("config key 'grid.exclude': every run of the grid is excluded")
        return runs

    def _excluded(self, run: Run) -> bool:
        values = {k: str(v) for k, v in run.grid.items()}
        return any(all(values.get(k) == str(v) for k, v in rule.items()) for rule in self.cfg["grid"]["exclude"])

    def run(self, run_id: str) -> Run:
        """The run with this id; raises :class:`ConfigError` naming the known ids' shape."""
        known = self._by_id.get(run_id.strip("/"))  # the DAG asks thousands of times: no regex then
        if known is not None:
            return known
        parse_run_id(run_id)
        try:
            return self._by_id[run_id.strip("/")]
        except KeyError:
            raise ConfigError(f"run '{run_id}' is not part of study '{self.experiment}' "
                              f"(`pairrel config runs` lists its {len(self.runs)} runs)") from None

    def training_for(self, data: str) -> dict[str, Any]:
        return deep_merge(self.cfg["training"], self.cfg["data"][data].get("training") or {})

    @property
    def models_used(self) -> list[str]:
        return sorted({run.model for run in self.runs})

    @property
    def data_used(self) -> list[str]:
        return sorted({run.data for run in self.runs})

    # -- files -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """The merged, defaults-filled config every job reads (a DAG output, written under the lock)."""
        return self.layout.path(layout.CONFIG)

    @property
    def mteb_cache(self) -> Path:
        return self.layout.path(layout.MTEB_CACHE)

    @property
    def embeddings_dir(self) -> Path:
        """On-disk corpus embeddings of running evaluations (resumable; removed when done)."""
        return self.layout.path(layout.EMBEDDINGS)

    def prepared(self, data: str, source: str, fold: int | None = None, suffix: str = layout.PARQUET) -> Path:
        """A prepared source file; a K-fold source has one per fold (its training queries)."""
        spec = self.cfg["data"][data]["sources"][source]
        return self.layout.prepared(data, source, fold if spec.get("folds") else None, suffix)

    def folds_file(self, data: str, source: str, fold: int) -> Path:
        return self.prepared(data, source, fold, layout.FOLDS)

    def source_parts(self, data: str) -> list[tuple[str, int | None]]:
        """(source, fold) of every prepared file the mix's runs use."""
        folds = sorted({run.fold for run in self.runs if run.data == data and run.fold is not None})
        parts = []
        for source, spec in self.cfg["data"][data]["sources"].items():
            parts.extend((source, f) for f in folds) if spec.get("folds") else parts.append((source, None))
        return parts

    def model_file(self, model: str) -> Path:
        """A base model's resolved config, named by its content (as :attr:`Run.resolved_file`)."""
        cfg = self.cfg["models"][model]
        return self.layout.path(layout.RESOLVED_MODEL, model=model, hash=sha256_text(canonical_json(cfg))[:12])

    def base_marker(self, model: str, group: str) -> Path:
        return self.layout.path(layout.BASE_MARKER, model=model, group=group)

    # -- result identity ---------------------------------------------------------------------
    @cached_property
    def _checkpoint_names(self) -> dict[str, tuple[Run, int]]:
        return {run.mteb_name(step): (run, step) for run in self.runs for step in run.steps}

    def identify(self, mteb_name: str) -> tuple[Run | None, str | None, int | None]:
        """(run, model key, step) of an mteb model name of this study; (None, None, None) otherwise.

        A checkpoint gives (run, run.model, step), a base model (None, model key, None).
        """
        if mteb_name in self._checkpoint_names:
            run, step = self._checkpoint_names[mteb_name]
            return run, run.model, step
        model = mteb_name.removeprefix(layout.base_model_name(""))
        if model != mteb_name and model in self.cfg["models"]:
            return None, model, None
        return None, None, None

    def evaluated_model(self, model: str) -> dict:
        """A model's config as its evaluations see it: plus the evaluation protocol of its kind
        (so the revision of a result, :func:`base_revision` / :func:`checkpoint_revision`,
        changes with the protocol and a cached result of another protocol is never reused)."""
        from pairrel.evaluate.protocol import protocol_for

        model_cfg = self.cfg["models"][model]
        return model_cfg | {"evaluation_protocol": protocol_for(self.evaluation, model_cfg["kind"]).identity()}

    def current_revision(self, run: Run | None, model: str, step: int | None = None) -> str | None:
        """The revision whose scores are current: the base model's config fingerprint, or the
        fingerprint of the checkpoint's weights on disk; without the checkpoint (results copied
        without checkpoints), the revision its evaluations recorded after the run's ``done``.
        ``STALE`` when nothing can be current (a run being retrained); None when unknown."""
        if run is None:
            return base_revision(self.evaluated_model(model))
        checkpoint = run.checkpoint(step)
        if (checkpoint / layout.ADAPTER_TENSORS).is_file():
            # The weights on disk decide: markers of an older training may still lie in eval/.
            return checkpoint_revision(checkpoint, self.evaluated_model(model))
        if run.dir.is_dir() and not run.done_file.is_file():
            return STALE  # retraining, or failed: no checkpoint's scores are current
        done_at = run.done_file.stat().st_mtime if run.done_file.is_file() else 0.0
        revisions = set()
        for group in self.eval_plan.groups_for(run, final=run.full_benchmark(step)):
            marker = run.eval_marker(step, group)
            try:
                if marker.stat().st_mtime >= done_at:  # evaluated after this training finished
                    revisions.add(json.loads(marker.read_text())["revision"])
            except (OSError, ValueError, KeyError):
                continue
        return revisions.pop() if len(revisions) == 1 else (STALE if revisions else None)
