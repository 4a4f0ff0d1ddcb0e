"""Fetch everything a config needs (online), and say exactly what is missing (offline).

``prefetch(cfg)`` runs on a machine with network access and fills the caches that air-gapped
nodes then read: the ir_datasets cache (``$IR_DATASETS_HOME``, default ``~/.ir_datasets``), the
Hugging Face hub cache (models, MTEB task data).

``check_available(cfg)`` never touches the network: it walks the download objects behind each
ir_datasets component a source needs (queries, qrels, docpairs, docs) and lists every file that
is neither at its cache path nor at a local mirror path, naming the dataset, the file (its URL)
and the path where ir_datasets looks for it; then models and MTEB task data in the hub cache.
The dataset part answers in well under a second.

A JSONL source (``jsonl: path``) with an ``origin: {hub_dataset, revision, file, sha256?,
size?}`` is downloaded by prefetch from that Hugging Face dataset repository at the pinned
revision and copied to ``path`` (temporary file + rename); ``check`` verifies it offline: present,
size and SHA-256 when the origin states them, and always the line schema (every line of the
first ``JSONL_CHECK_LINES`` a JSON object with a non-empty string ``query``, and ``positive`` /
``negative`` strings or lists of strings).

For ``msmarco-passage-v2/trec-dl-2023[/judged]`` prefetch streams the 21.8 GB corpus tar once
and keeps only the judged passages (``trecdl.extract_passages_sparse``); other corpora are
downloaded whole by ir_datasets.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ir_datasets.util import Cache, Lazy
from ir_datasets.util.download import Download, LocalDownload, RequestsDownload

from pairrel.data import trecdl
from pairrel.data.registry import built_docs_store, load_dataset, register_from_config
from pairrel.io import file_sha256

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MissingFile:
    dataset_id: str
    component: str
    file: str  # where it comes from: a URL, or a local path for local datasets
    expected_path: str  # where ir_datasets looks for it

    def __str__(self) -> str:
        return (f"dataset {self.dataset_id} ({self.component}): missing {self.file} -- "
                f"ir_datasets looks for it at {self.expected_path}")


class DataUnavailableError(RuntimeError):
    """Files a stage needs are not in the local caches (and the network is not to be used)."""

    def __init__(self, missing: list):
        self.missing = list(missing)
        lines = "\n  ".join(str(m) for m in self.missing)
        super().__init__(f"{len(self.missing)} required file(s) missing:\n  {lines}\n"
                         "Run `pairrel data prefetch --config ...` on a machine with network access, "
                         "or place the files at the paths shown.")


JSONL_CHECK_LINES = 1000  # lines of a JSONL source whose schema check reads (it must stay fast)


def _jsonl_schema_problem(path: Path, max_lines: int = JSONL_CHECK_LINES) -> str | None:
    """The first line (of the first ``max_lines``) that is not a training example, or None."""
    from pairrel.io import FileFormatError, iter_json_objects

    def texts(value) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    try:
        for number, record in iter_json_objects(path):
            if number > max_lines:
                break
            if not isinstance(record.get("query"), str) or not record["query"].strip():
                return f"{path} line {number}: expected an object with a non-empty string 'query'"
            for key in ("positive", "negative"):
                if record.get(key) is not None and not texts(record[key]):
                    return f"{path} line {number}: key {key!r} must be a string or a list of strings"
            if record.get("positive") is None:
                return f"{path} line {number}: no 'positive'"
    except FileFormatError as err:  # not JSON, not an object, not UTF-8: the file and line
        return str(err)
    return None


def jsonl_problems(where: str, path: str | Path, origin: dict | None) -> list[str]:
    """Offline check of one JSONL source file against its origin (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        how = (f"`pairrel data prefetch` downloads it from hub dataset {origin['hub_dataset']}@{origin['revision']} "
               f"({origin['file']})" if origin else "no public origin is configured: place the file there")
        return [f"{where}: JSONL file {path} does not exist; {how}"]
    problems = []
    if origin and origin.get("size") is not None and path.stat().st_size != int(origin["size"]):
        problems.append(f"{where}: {path} has {path.stat().st_size} bytes, its origin {origin['hub_dataset']}/"
                        f"{origin['file']} has {origin['size']}")
    if origin and origin.get("sha256") and file_sha256(path) != origin["sha256"]:
        problems.append(f"{where}: {path} does not match the SHA-256 of {origin['hub_dataset']}/{origin['file']}")
    schema = _jsonl_schema_problem(path)
    if schema:
        problems.append(f"{where}: {schema}")
    return problems


def fetch_jsonl(path: str | Path, origin: dict) -> Path:
    """Download ``origin`` (hub dataset file at a pinned revision) to ``path``; no-op if present."""
    import shutil

    from huggingface_hub import hf_hub_download

    path = Path(path)
    if path.is_file():
        return path
    cached = hf_hub_download(origin["hub_dataset"], origin["file"], repo_type="dataset", revision=origin["revision"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(cached, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _source_of(download: Download) -> str:
    for mirror in download.mirrors:
        if isinstance(mirror, RequestsDownload):
            return mirror.url
    return str(download.mirrors[0]._path) if download.mirrors else "?"


def _missing_leaves(obj, seen: set) -> list[tuple[str, str]]:
    """(file, expected path) of every download behind ``obj`` that is not on disk."""
    if id(obj) in seen or isinstance(obj, (Lazy, str, bytes, int, float, type(None))):
        return []
    seen.add(id(obj))
    if isinstance(obj, LocalDownload):
        return [] if obj._path.exists() else [(str(obj._path), str(obj._path))]
    if isinstance(obj, Download):
        if obj._cache_path is not None and os.path.exists(obj._cache_path):
            return []
        local = [m._path for m in obj.mirrors if isinstance(m, LocalDownload)]
        if any(p.exists() for p in local):
            return []
        expected = obj._cache_path or (local[0] if local else "(a temporary file: no cache path)")
        return [(_source_of(obj), str(expected))]
    if isinstance(obj, Cache):
        if Path(obj._path).exists():
            return []
        inner = _missing_leaves(obj._streamer, seen)
        return [(inner[0][0] if inner else "?", str(obj._path))]
    if isinstance(obj, (list, tuple)):
        return [leaf for item in obj for leaf in _missing_leaves(item, seen)]
    if isinstance(obj, dict):
        return [leaf for item in obj.values() for leaf in _missing_leaves(item, seen)]
    if type(obj).__module__.startswith(("ir_datasets", "pairrel")) and hasattr(obj, "__dict__"):
        return [leaf for item in vars(obj).values() for leaf in _missing_leaves(item, seen)]
    return []


def _v2_passages_built(handler) -> Path | None:
    """For the MS MARCO v2 passage corpus: the extracted-store folder, if it is built."""
    if type(handler).__name__ != "MsMarcoV2Passages":
        return None
    extracted = Path(str(handler._dlc.path(force=False)) + ".extracted")
    return extracted if (extracted / "_built").exists() else None


def missing_files(dataset_id: str, components=("queries", "qrels", "docs")) -> list[MissingFile]:
    """Files of the named components of ``dataset_id`` that are not in the local cache.

    Components the dataset does not provide are skipped. Offline and fast: only stats files.
    """
    dataset = load_dataset(dataset_id)
    missing = []
    for component in components:
        if not getattr(dataset, f"has_{component}")():
            continue
        handler = getattr(dataset, f"{component}_handler")()
        if component == "docs" and _v2_passages_built(handler) is not None:
            continue
        for file, expected in _missing_leaves(handler, set()):
            missing.append(MissingFile(dataset_id, component, file, expected))
    return list(dict.fromkeys(missing))  # a file shared by components is listed once


def require_files(dataset_id: str, components) -> None:
    """Raise DataUnavailableError naming every missing file of these components."""
    missing = missing_files(dataset_id, components)
    if missing:
        raise DataUnavailableError(missing)


def source_components(dataset, pairs: str = "auto") -> tuple[str, ...]:
    """Components that preparing a source from ``dataset`` reads (see sources.prepare_source)."""
    use_docpairs = pairs == "docpairs" or (pairs == "auto" and dataset.has_docpairs())
    return ("queries", "docpairs", "docs") if use_docpairs else ("queries", "qrels", "docs")


def _used(cfg: dict, section: str, axis: str) -> dict:
    """The entries of ``section`` that the grid uses (all of them without a grid)."""
    entries = cfg.get(section) or {}
    names = (cfg.get("grid") or {}).get(axis)
    return {name: entries[name] for name in names if name in entries} if names else entries


def _config_sources(cfg: dict):
    """(data mix, source label, source or part config) of every file-bearing source: a pooled
    source gives each of its parts, labelled ``"source, part P"``. A plain source comes with the
    schema's defaults filled (the config may be a partial one, not validated as a study)."""
    from pairrel.config import fill_source_defaults
    from pairrel.data.parts import is_pooled, source_parts

    for data_name, mix in _used(cfg, "data", "data").items():
        for source_name, source in ((mix or {}).get("sources") or {}).items():
            if is_pooled(source):
                for part_name, part in source_parts(source_name, source).items():
                    yield data_name, f"{source_name}, part {part_name}", part
            else:
                yield data_name, source_name, fill_source_defaults(source)


def _model_repos(cfg: dict) -> list[str]:
    """Hub ids of the grid's models and adapters (local folders and packaged models skipped)."""
    from pairrel.encoder import resolve_model_path

    repos = []
    for model in _used(cfg, "models", "models").values():
        for key in ("name_or_path", "mntp_adapter"):
            value = (model or {}).get(key)
            if value and not Path(resolve_model_path(value)).exists():
                repos.append(value)
    return list(dict.fromkeys(repos))


def _leaf_tasks(task, aggregate: str | None = None):
    """(task, name of the aggregate it belongs to, or None) for every task that has its own data.

    An aggregate task (mteb's ``AbsTaskAggregate``, e.g. CQADupstackRetrieval, the mean of 12
    StackExchange subforum tasks) has no dataset of its own: its ``metadata.dataset`` path is a
    placeholder, and its data is that of its sub-tasks (``metadata.tasks``).
    """
    subtasks = getattr(task.metadata, "tasks", None) if getattr(task, "is_aggregate", False) else None
    if subtasks:
        for sub in subtasks:
            yield from _leaf_tasks(sub, aggregate or task.metadata.name)
    else:
        yield task, aggregate


def _mteb_task_data(cfg: dict) -> list:
    """(task, aggregate or None) for every MTEB task whose data the config's evaluation reads."""
    from pairrel.evaluate.task_specs import QUICKSTART_BENCHMARK

    evaluation = cfg.get("evaluation") or {}
    if not evaluation.get("benchmark") and not evaluation.get("tasks"):
        return []
    if evaluation.get("benchmark") == QUICKSTART_BENCHMARK:
        return []  # local tasks: their data is the config's local datasets
    import mteb  # slow to import: only when the config evaluates on MTEB

    if evaluation.get("tasks"):
        tasks = mteb.get_tasks(tasks=list(evaluation["tasks"]))
    else:
        tasks = mteb.get_benchmark(evaluation["benchmark"]).tasks
    leaves = {}
    for task in tasks:
        for leaf, aggregate in _leaf_tasks(task):
            leaves.setdefault(leaf.metadata.name, (leaf, aggregate))
    return list(leaves.values())


def _mteb_tasks(cfg: dict) -> list:
    """The MTEB tasks with their own data that the config evaluates on (aggregates expanded)."""
    return [task for task, _ in _mteb_task_data(cfg)]


def check_available(cfg: dict, include_models: bool = True, include_mteb: bool = True) -> list[str]:
    """Every file the config needs that is not cached locally, as messages; [] when all are."""
    register_from_config(cfg)
    problems: list[str] = []
    for data_name, source_name, source in _config_sources(cfg):
        if source.get("jsonl"):
            problems += jsonl_problems(f"data {data_name}, source {source_name}", source["jsonl"], source.get("origin"))
            continue
        dataset = load_dataset(source["dataset"])
        components = source_components(dataset, source["pairs"])
        problems += [str(m) for m in missing_files(source["dataset"], components)]
    if include_models:
        from huggingface_hub import snapshot_download

        for repo in _model_repos(cfg):
            try:
                snapshot_download(repo, local_files_only=True)
            except Exception:  # LocalEntryNotFoundError and friends: not in the cache
                problems.append(f"model {repo}: not in the Hugging Face cache "
                                f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'})")
    if include_mteb:
        from huggingface_hub import snapshot_download

        for task, aggregate in _mteb_task_data(cfg):
            spec = task.metadata.dataset
            part_of = f" (part of {aggregate})" if aggregate else ""
            try:
                snapshot_download(spec["path"], repo_type="dataset", revision=spec.get("revision"),
                                  local_files_only=True)
            except Exception:
                problems.append(f"MTEB task {task.metadata.name}{part_of}: dataset {spec['path']}@{spec.get('revision')} "
                                "is not in the Hugging Face cache")
    return problems


def _prefetch_dataset(dataset_id: str, components) -> None:
    dataset = load_dataset(dataset_id)
    for component in components:
        if component == "docs":
            continue
        if getattr(dataset, f"has_{component}")():
            for _ in getattr(dataset, f"{component}_iter")():  # first item forces the download
                break
    if "docs" not in components or not dataset.has_docs():
        return
    handler = dataset.docs_handler()
    if dataset_id.startswith("msmarco-passage-v2/trec-dl-2023") and _v2_passages_built(handler) is None:
        doc_ids = {qrel.doc_id for qrel in dataset.qrels_iter()}
        remote = [m for m in handler._dlc.mirrors if isinstance(m, RequestsDownload)]
        with remote[0].stream() as stream:
            counts = trecdl.extract_passages_sparse(stream, doc_ids, str(handler._dlc.path(force=False)) + ".extracted")
        _logger.info("%s: extracted %s judged passages", dataset_id, counts)
    else:
        built_docs_store(dataset)


def prefetch(cfg: dict, include_models: bool = True, include_mteb: bool = True) -> list[str]:
    """Download every dataset, model and MTEB task the config needs; returns what it fetched."""
    register_from_config(cfg)
    done = []
    for data_name, source_name, source in _config_sources(cfg):
        if source.get("jsonl"):
            if source.get("origin") and not Path(source["jsonl"]).is_file():
                fetch_jsonl(source["jsonl"], source["origin"])
                done.append(f"JSONL {source['jsonl']} ({source['origin']['hub_dataset']}/{source['origin']['file']})")
            elif not Path(source["jsonl"]).is_file():
                _logger.warning("data %s, source %s: %s is missing and has no origin to download it from",
                                data_name, source_name, source["jsonl"])
        if source.get("dataset"):
            dataset = load_dataset(source["dataset"])
            _prefetch_dataset(source["dataset"], source_components(dataset, source["pairs"]))
            done.append(f"dataset {source['dataset']}")
    if include_models:
        from huggingface_hub import snapshot_download

        for repo in _model_repos(cfg):
            snapshot_download(repo)
            done.append(f"model {repo}")
    if include_mteb:
        for task in _mteb_tasks(cfg):
            task.load_data()
            done.append(f"MTEB task {task.metadata.name}")
    return done
