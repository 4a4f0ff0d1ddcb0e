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
from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK

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
# Evaluation groups besides MTEB task types.
ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP = "all", "local", "heldout"
GROUP_JOIN = "+"  # task types evaluated by one job: "Classification+Clustering+STS"


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


def source_job(cfg: dict, data: str, source: str, fold: int | None = None) -> dict[str, Any]:
    """What one preparation job needs: the source spec (with the fold) and local datasets. Works
    on a partial config too (``pairrel data prepare`` needs only ``data`` and ``local_datasets``)."""
    try:
        spec = copy.deepcopy(cfg["data"][data]["sources"][source])
    except (KeyError, TypeError):
        raise ConfigError(f"config has no key 'data.{data}.sources.{source}'") from None
    if spec.get("folds"):
        if fold is None:
            raise ConfigError(f"source '{source}' of '{data}' has {spec['folds']} folds: say which (--fold)")
        spec["fold"] = fold
    return {"data": data, "source": source, "spec": spec, "local_datasets": cfg.get("local_datasets") or {}}


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
        ``evaluation.full_benchmark`` selects (:meth:`Study.gets_full_benchmark`)."""
        return step == self.final_step and self.study.gets_full_benchmark(self)

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
    """A validated config and everything derived from it: runs, paths, evaluation plan."""

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
        self._check_evaluation()

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

    def _fold_values(self, data: str) -> list[int | None]:
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
                        for fold in self._fold_values(data):
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

    def source_job(self, data: str, source: str, fold: int | None = None) -> dict[str, Any]:
        return source_job(self.cfg, data, source, fold)

    def model_file(self, model: str) -> Path:
        """A base model's resolved config, named by its content (as :attr:`Run.resolved_file`)."""
        cfg = self.cfg["models"][model]
        return self.layout.path(layout.RESOLVED_MODEL, model=model, hash=sha256_text(canonical_json(cfg))[:12])

    def base_marker(self, model: str, group: str) -> Path:
        return self.layout.path(layout.BASE_MARKER, model=model, group=group)

    # -- evaluation plan ---------------------------------------------------------------------
    @property
    def is_local_benchmark(self) -> bool:
        return self.evaluation["benchmark"] == QUICKSTART_BENCHMARK

    @cached_property
    def _benchmark_types(self) -> dict[str, str]:
        """Task name -> type of every task of the benchmark (from the generated table of
        :mod:`pairrel.evaluate.benchmark_table`: planning never imports mteb), and of the user's
        own tasks (``evaluation.local_tasks``)."""
        own = {entry["name"]: entry["type"] for entry in self.evaluation["local_tasks"]}
        if self.is_local_benchmark:
            from pairrel.evaluate.task_specs import QUICKSTART_TASK_SPECS

            return {name: spec["type"] for name, spec in QUICKSTART_TASK_SPECS.items()} | own
        from pairrel.evaluate.benchmark_table import UnknownBenchmarkError, benchmark_task_types

        try:
            return benchmark_task_types(self.evaluation["benchmark"]) | own
        except UnknownBenchmarkError as err:
            raise ConfigError(f"config key 'evaluation.benchmark': {err}") from None

    def _task_list(self, key: str) -> list[str]:
        names = self.evaluation[key]
        if names is None:
            return list(self._benchmark_types)
        unknown = sorted(set(names) - set(self._benchmark_types))
        if unknown:
            raise ConfigError(f"config key 'evaluation.{key}': not in {self.evaluation['benchmark']}: {', '.join(unknown)}")
        if not names:
            raise ConfigError(f"config key 'evaluation.{key}': selects no task")
        return list(names)

    def eval_tasks(self, final: bool) -> list[str]:
        """Benchmark tasks of full-benchmark checkpoints (``final``: :meth:`Run.full_benchmark`)
        and base models, or of the others (intermediate checkpoints, folds past the first)."""
        if final or self.evaluation["intermediate_tasks"] is None:
            return self._task_list("tasks")
        return self._task_list("intermediate_tasks")

    def _group_tasks(self, group: str, tasks: list[str]) -> list[str]:
        """Tasks of one evaluation job: a task type, several joined by '+' (one job, one model
        load for all of them), or every task ('all', 'local')."""
        if group in (ALL_GROUP, LOCAL_GROUP):
            return tasks
        types = set(group.split(GROUP_JOIN))
        return [t for t in tasks if self._benchmark_types[t] in types]

    def _check_evaluation(self) -> None:
        known = sorted(set(self._benchmark_types.values()) | {ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP})
        final = self.eval_tasks(final=True)
        self.eval_tasks(final=False)
        for i, group in enumerate(self.evaluation["task_groups"]):
            parts = group.split(GROUP_JOIN)
            for part in parts:
                if part not in known or (len(parts) > 1 and part in (ALL_GROUP, LOCAL_GROUP, HELDOUT_GROUP)):
                    raise ConfigError(f"config key 'evaluation.task_groups.{i}': unknown group '{part}' "
                                      f"(known: {', '.join(known)}; task types join with '{GROUP_JOIN}')")
            if group == HELDOUT_GROUP:
                if not any(run.fold is not None for run in self.runs):
                    raise ConfigError(f"config key 'evaluation.task_groups.{i}': 'heldout' needs a data mix "
                                      "with a K-fold source on the grid")
            elif not self._group_tasks(group, final):
                raise ConfigError(f"config key 'evaluation.task_groups.{i}': group '{group}' selects no task "
                                  f"of {self.evaluation['benchmark']}")

    def gets_full_benchmark(self, run: Run | None) -> bool:
        """Whether the final checkpoint of ``run`` (None: a base model) runs the full benchmark.

        ``evaluation.full_benchmark``: ``all`` -- every run; ``first-fold`` -- runs without folds,
        and of a K-fold mix's runs the first fold on the grid per (model, data, loss, labels,
        seed). The other folds are near-copies of it (each trains on four fifths of the same queries):
        their final checkpoints run ``intermediate_tasks`` and their held-out fold, so the
        K-fold experiment gets every fold's held-out score and a generalisation score on the
        subset, and the main table one full-benchmark run per variant.
        """
        if run is None or run.fold is None or self.evaluation["full_benchmark"] == "all":
            return True
        return run.fold == self._fold_values(run.data)[0]

    def groups_for(self, run: Run | None, final: bool = True) -> list[str]:
        """Evaluation groups of a checkpoint (``run``; ``final``: its last step) or a base model."""
        tasks = self.eval_tasks(final)
        groups = []
        for group in self.evaluation["task_groups"]:
            if group == HELDOUT_GROUP:
                if run is None or run.fold is not None:
                    groups.append(group)
            elif self._group_tasks(group, tasks):
                groups.append(group)
        return groups

    def tasks_for(self, group: str, final: bool = True) -> list[str]:
        """Benchmark task names one evaluation job runs (``heldout``: none, they are derived)."""
        return [] if group == HELDOUT_GROUP else self._group_tasks(group, self.eval_tasks(final))

    def checkpoint_markers(self) -> list[Path]:
        return [run.eval_marker(step, group) for run in self.runs for step in run.eval_steps
                for group in self.groups_for(run, final=run.full_benchmark(step))]

    def base_markers(self) -> list[Path]:
        if not self.evaluation["include_base"]:
            return []
        return [self.base_marker(m, g) for m in self.models_used for g in self.groups_for(None)]

    def heldout_parts(self, run: Run | None) -> list[tuple[str, str, int]]:
        """(data, source, fold) of the held-out tasks: the run's own fold, or (base models)
        every fold of every K-fold mix on the grid."""
        runs = [run] if run is not None else self.runs
        parts = set()
        for r in runs:
            if r.fold is None:
                continue
            for source, spec in self.cfg["data"][r.data]["sources"].items():
                if spec.get("folds"):
                    parts.add((r.data, source, r.fold))
        return sorted(parts)

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
        for group in self.groups_for(run, final=run.full_benchmark(step)):
            marker = run.eval_marker(step, group)
            try:
                if marker.stat().st_mtime >= done_at:  # evaluated after this training finished
                    revisions.add(json.loads(marker.read_text())["revision"])
            except (OSError, ValueError, KeyError):
                continue
        return revisions.pop() if len(revisions) == 1 else (STALE if revisions else None)

    # -- job inputs and arguments (the workflow's rules ask these) ------------------------------
    def corpus_outputs(self) -> list[Path]:
        """The generated quickstart corpus (one meta.json per split), when configured."""
        corpus = self.cfg["quickstart_corpus"]
        return [Path(corpus["root"]) / split / "meta.json" for split in ("train", "test")] if corpus else []

    def corpus_options(self) -> str:
        corpus = self.cfg["quickstart_corpus"]
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in corpus.items() if k != "root")

    def _local_dataset_files(self, dataset_id: str) -> list[Path]:
        """Files a local dataset is read from; a corpus this DAG generates is its meta.json."""
        local = self.cfg["local_datasets"].get(dataset_id)
        if local is None:
            return []
        root = Path(local)
        corpus = self.cfg["quickstart_corpus"]
        if corpus and root.resolve().is_relative_to(Path(corpus["root"]).resolve()):
            return [root / "meta.json"]
        from pairrel.data.registry import local_dataset_files

        return local_dataset_files(root)

    def source_inputs(self, data: str, source: str) -> list[Path]:
        """Files a preparation job reads. A JSONL file that is not there yet is left out, so the
        DAG still plans; the job then fails naming it (`pairrel data check` lists it up front)."""
        from pairrel.data.parts import source_parts

        files: list[Path] = []
        for part in source_parts(source, self.cfg["data"][data]["sources"][source]).values():
            if "jsonl" in part:
                files += [Path(part["jsonl"])] if Path(part["jsonl"]).exists() else []
            else:
                files += self._local_dataset_files(part["dataset"])
        return files

    def source_job_json(self, data: str, source: str, fold: int | None = None) -> str:
        return canonical_json(self.source_job(data, source, fold))

    def eval_inputs(self, run: Run | None, group: str) -> list[Path]:
        """Data files an evaluation job reads: local task data, a held-out fold's split."""
        if group == HELDOUT_GROUP:
            return [self.folds_file(d, s, f) for d, s, f in self.heldout_parts(run)]
        files = []
        if self.is_local_benchmark and self.evaluation["local_dataset"]:
            files += self._local_dataset_files(self.evaluation["local_dataset"])
        tasks = set(self.tasks_for(group, final=True)) | set(self.tasks_for(group, final=False))
        for entry in self.evaluation["local_tasks"]:
            if entry["name"] in tasks:
                path = self.root / entry["path"]
                files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return files

    def report_args(self) -> str:
        """`pairrel report` options of this study, shell-quoted."""
        import shlex

        args = ["--results", str(self.mteb_cache), "--runs", str(self.results / "runs"),
                "--out", str(self.figures), "--benchmark", self.evaluation["benchmark"]]
        report = self.cfg["report"]
        if report["reference"]:
            args += ["--reference", report["reference"]]
        if self.evaluation["tasks"]:
            args += ["--tasks", *self.evaluation["tasks"]]
        if report["compare"]:
            args += ["--compare", *report["compare"]]
        return " ".join(shlex.quote(a) for a in args)
