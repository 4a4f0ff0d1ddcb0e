"""TREC-DL 2023 specifics: judged query ids, query-level K-fold splits, judged-passage extraction.

TREC-DL 2023 (``msmarco-passage-v2/trec-dl-2023/judged``; document version
``msmarco-document-v2/trec-dl-2023/judged``) is a test collection with graded qrels (0-3). To
train on it and still evaluate on it, queries are split K-fold: a run trains on the queries of
K-1 folds and is evaluated on the held-out fold (``kfold_queries``).

Its corpus is one 21.8 GB tar of 70 gzipped bundles. ir_datasets looks passages up by id:
``msmarco_passage_XX_OFFSET`` names bundle ``XX`` and the byte OFFSET of the passage's line in
the *decompressed* bundle, read from ``<tar path>.extracted/msmarco_passage_XX`` once the folder
has a ``_built`` marker. ``extract_passages_sparse`` streams the tar once and writes only the
wanted lines at their offsets into sparse files, so ``docs_store().get_many`` works for the
judged passages with a few MB of disk instead of ~60 GB.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np

PARTIAL_MARKER = "_pairrel_partial.json"


def kfold_queries(query_ids: Iterable[str], k: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """K (train, test) splits of the distinct query ids; each list sorted.

    Deterministic: ids are sorted first (input order does not matter), permuted by
    ``numpy.random.default_rng(seed).permutation``, and cut into K contiguous parts whose sizes
    differ by at most one (``numpy.array_split``). Fold i tests on part i and trains on the
    others, so the test sets are disjoint and together cover every query once.
    """
    ids = sorted(set(query_ids))
    if k < 2 or k > len(ids):
        raise ValueError(f"K-fold needs 2 <= k <= number of queries ({len(ids)}), got k={k}")
    order = np.random.default_rng(seed).permutation(len(ids))
    parts = np.array_split(order, k)
    splits = []
    for i in range(k):
        test = sorted(ids[j] for j in parts[i])
        test_set = set(test)
        splits.append(([q for q in ids if q not in test_set], test))
    return splits


def judged_query_ids(dataset) -> list[str]:
    """Distinct query ids with at least one judgment, in qrels file order."""
    seen: dict[str, None] = {}
    for qrel in dataset.qrels_iter():
        seen.setdefault(qrel.query_id, None)
    return list(seen)


def passage_location(doc_id: str) -> tuple[str, int] | None:
    """(bundle, byte offset) of an MS MARCO v2 passage id, or None for another id form."""
    parts = doc_id.split("_")
    if len(parts) != 4 or parts[:2] != ["msmarco", "passage"] or not parts[3].isdigit():
        return None
    return parts[2], int(parts[3])


def extract_passages_sparse(tar_stream: BinaryIO, doc_ids: Iterable[str], extracted_dir: str | Path) -> dict:
    """Write the lines of ``doc_ids`` from an msmarco_v2_passage tar stream into ``extracted_dir``.

    Each wanted line goes to ``extracted_dir/msmarco_passage_XX`` at its own offset (the file is
    sparse elsewhere), then ``_built`` and ``_pairrel_partial.json`` (what was extracted) are
    written: ir_datasets' docs store then serves exactly these passages. Returns counts.
    """
    wanted: dict[str, set[int]] = defaultdict(set)
    for doc_id in doc_ids:
        location = passage_location(doc_id)
        if location is None:
            raise ValueError(f"{doc_id!r} is not an MS MARCO v2 passage id (msmarco_passage_XX_OFFSET)")
        wanted[location[0]].add(location[1])
    extracted_dir = Path(extracted_dir)
    extracted_dir.mkdir(parents=True, exist_ok=True)
    found = 0
    with tarfile.open(fileobj=tar_stream, mode="r|") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".gz"):
                continue
            bundle = name[: -len(".gz")].rsplit("_", 1)[-1]
            positions = wanted.get(bundle)
            if not positions:
                continue
            offset = 0
            with gzip.open(tar.extractfile(member)) as lines, open(extracted_dir / name[: -len(".gz")], "wb") as out:
                for line in lines:
                    if offset in positions:
                        out.seek(offset)
                        out.write(line)
                        found += 1
                    offset += len(line)
    n_wanted = sum(len(p) for p in wanted.values())
    (extracted_dir / PARTIAL_MARKER).write_text(json.dumps({"wanted": n_wanted, "found": found}) + "\n")
    (extracted_dir / "_built").touch()
    return {"wanted": n_wanted, "found": found}
