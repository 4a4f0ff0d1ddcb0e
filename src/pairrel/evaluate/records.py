"""What an evaluation job's marker records about the result files it leaves, and checks of it.

A marker (``eval/…/{group}.done``, :func:`pairrel.evaluate.run.evaluate_study_model`) lists, per
task, the result file mteb wrote into the cache with its size, modification time and SHA-256.
Snakemake knows only the marker, so a result file cut short or altered afterwards would be
trusted as long as the marker stands ("Nothing to be done"). :func:`damaged_results` compares the
files with the record (hashing only files whose size or time changed, so checking a whole study
stays cheap). The workflow refuses to plan while a marker's results are damaged, naming the files
and the marker to delete; a job that runs while its old marker stands deletes that marker's
damaged results first, so mteb computes them again instead of keeping them ("only-missing").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pairrel.layout import result_folder

RECORD_KEY = "result_files"


def result_file(cache_dir: str | Path, name: str, revision: str, task: str) -> Path:
    """mteb's ``ResultCache`` file of one task of a model (no experiment kwargs)."""
    return result_folder(cache_dir, name, revision) / f"{task}.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp(path: Path) -> dict:
    """``{"size", "mtime_ns", "sha256"}`` of a file."""
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": _sha256(path)}


def result_stamps(cache_dir: str | Path, name: str, revision: str, tasks) -> dict[str, dict]:
    """The record of a marker: ``{task: stamp}`` for each task whose result file exists."""
    stamps = {}
    for task in tasks:
        path = result_file(cache_dir, name, revision, task)
        if path.is_file():
            stamps[task] = {"path": str(path), **stamp(path)}
    return stamps


def damaged_results(marker: str | Path) -> list[Path]:
    """Result files a marker recorded that are now missing or differ from the record (empty for
    a marker without a record, or one that cannot be read: that is the marker's own fault)."""
    try:
        record = json.loads(Path(marker).read_text(encoding="utf-8")).get(RECORD_KEY) or {}
    except (OSError, ValueError, AttributeError):
        return []
    damaged = []
    for entry in record.values():
        path = Path(entry["path"])
        try:
            info = path.stat()
        except OSError:
            damaged.append(path)
            continue
        if info.st_size == entry["size"] and info.st_mtime_ns == entry["mtime_ns"]:
            continue  # untouched since the job wrote it
        if info.st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            damaged.append(path)
    return damaged


def damaged_markers(markers) -> dict[str, list[Path]]:
    """``{marker: damaged result files}`` for the existing markers with any."""
    found = {}
    for marker in markers:
        if Path(marker).is_file():
            damaged = damaged_results(marker)
            if damaged:
                found[str(marker)] = damaged
    return found
