"""Resumable, shared text embeddings on disk: a checkpoint encodes each text once per instruction.

A retrieval corpus can take a checkpoint hours to encode (FEVER: 5.4M passages). The
:class:`ShardStore` writes the embeddings in shards as they are computed, so a job killed
mid-corpus (preemption, time limit) resumes from its last complete shard, and a text already
encoded by the same checkpoint with the same instruction is never encoded again — whichever task
it came from. FEVER and ClimateFEVER in MTEB(eng, v1) search the same 5.4M-passage corpus, which
is therefore encoded once per checkpoint.

Layout, one folder per (checkpoint identity, instruction)::

    {root}/{digest(identity)}/{digest(instruction)}/{digest(keys)}.npz
    {root}/{digest(identity)}/identity.json      # the identity in clear, for people

The key of a text is its 128-bit BLAKE2b digest, so a shard is addressed by the content of the
texts it holds: a corpus is the set of its shards, whatever order and chunking mteb hands it in
(mteb's full-corpus search encodes 50,000 documents per ``encode`` call, in dataset order).
A shard file holds ``keys`` (uint64 ``[n, 2]``) and ``embeddings`` (float32 ``[n, d]``).

A half-written shard is never trusted: a shard is written to a temporary name, flushed to disk
and renamed into place (atomic on POSIX); temporary files are never read; a shard whose keys do
not hash to its name, whose arrays disagree in length, or whose zip CRC fails is ignored (and its
texts encoded again).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from pairrel.config import atomic_write_text

# Texts per shard: at most this much work is lost when a job is killed (about 30 s of an 8B
# model at 278 passages/s on an H200).
DEFAULT_SHARD_TEXTS = 8192
_SHARD_SUFFIX = ".npz"


def digest(data: str | bytes, size: int = 16) -> str:
    """Hex BLAKE2b digest of ``size`` bytes (folder and file names)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def text_keys(texts: list[str]) -> np.ndarray:
    """uint64 ``[n, 2]``: the 128-bit BLAKE2b digest of each text (UTF-8)."""
    keys = np.empty((len(texts), 2), dtype=np.uint64)
    for i, text in enumerate(texts):
        keys[i] = np.frombuffer(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), dtype="<u8")
    return keys


class _Index:
    """Where each known key lives: sorted first halves for ``searchsorted``, checked on the second."""

    def __init__(self) -> None:
        self.shards: list[Path] = []
        self.known: set[str] = set()
        self._parts: list[tuple[np.ndarray, int]] = []  # (keys, shard number) not yet merged
        self.hi = np.empty(0, dtype=np.uint64)
        self.lo = np.empty(0, dtype=np.uint64)
        self.shard = np.empty(0, dtype=np.int64)
        self.row = np.empty(0, dtype=np.int64)

    def add(self, path: Path, keys: np.ndarray) -> None:
        self.known.add(path.name)
        self._parts.append((keys, len(self.shards)))
        self.shards.append(path)

    def drop(self, shard: int) -> None:
        """Forget a shard that can no longer be read (deleted by another job, corrupt)."""
        keep = self.shard != shard
        self.hi, self.lo, self.shard, self.row = self.hi[keep], self.lo[keep], self.shard[keep], self.row[keep]

    def _merge(self) -> None:
        if not self._parts:
            return
        hi = [self.hi] + [keys[:, 0] for keys, _ in self._parts]
        lo = [self.lo] + [keys[:, 1] for keys, _ in self._parts]
        shard = [self.shard] + [np.full(len(keys), n, dtype=np.int64) for keys, n in self._parts]
        row = [self.row] + [np.arange(len(keys), dtype=np.int64) for keys, _ in self._parts]
        self._parts.clear()
        hi, lo, shard, row = (np.concatenate(a) for a in (hi, lo, shard, row))
        order = np.argsort(hi, kind="stable")
        self.hi, self.lo, self.shard, self.row = hi[order], lo[order], shard[order], row[order]

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, row)`` per key, ``-1`` where the key is unknown."""
        self._merge()
        shard = np.full(len(keys), -1, dtype=np.int64)
        row = np.full(len(keys), -1, dtype=np.int64)
        if len(self.hi) == 0:
            return shard, row
        at = np.minimum(np.searchsorted(self.hi, keys[:, 0]), len(self.hi) - 1)
        # A first-half match whose second half differs (a 64-bit collision) counts as unknown.
        hit = (self.hi[at] == keys[:, 0]) & (self.lo[at] == keys[:, 1])
        shard[hit] = self.shard[at[hit]]
        row[hit] = self.row[at[hit]]
        return shard, row


class ShardStore:
    """Embeddings of one checkpoint, by instruction and text, as shards on disk.

    ``identity`` names the weights (a checkpoint fingerprint, or model name + revision +
    experiment kwargs): embeddings of different identities never mix. ``lookup`` finds texts
    already encoded, ``add`` writes new ones as one shard, ``release`` deletes the shards this
    store wrote or read, unless ``keep``.
    """

    def __init__(self, root: str | Path, identity: str, shard_texts: int = DEFAULT_SHARD_TEXTS, keep: bool = False) -> None:
        if shard_texts < 1:
            raise ValueError(f"shard_texts must be >= 1, got {shard_texts}")
        self.root = Path(root)
        self.identity = identity
        self.dir = self.root / digest(identity)
        self.shard_texts = shard_texts
        self.keep = keep
        self._indexes: dict[str, _Index] = {}
        self.touched: set[Path] = set()  # shards written or read by this store

    @property
    def piece_size(self) -> int:
        """Texts to encode between two shard writes."""
        return self.shard_texts

    def _folder(self, instruction: str) -> Path:
        return self.dir / digest(instruction)

    def _index(self, instruction: str) -> _Index:
        """The instruction's index, updated with shards that appeared since (resumed or other jobs)."""
        index = self._indexes.setdefault(instruction, _Index())
        folder = self._folder(instruction)
        if folder.is_dir():
            for path in sorted(folder.glob("*" + _SHARD_SUFFIX)):
                if path.name in index.known:
                    continue
                keys = _read_keys(path)
                if keys is None:
                    index.known.add(path.name)  # untrusted: never read again
                    continue
                index.add(path, keys)
        return index

    def lookup(self, instruction: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found, embeddings)``: a mask over ``texts`` and the embeddings of the found ones, in order."""
        found = np.zeros(len(texts), dtype=bool)
        if not texts:
            return found, None
        index = self._index(instruction)
        keys = text_keys(texts)
        shard, row = index.find(keys)
        rows: dict[int, np.ndarray] = {}
        for number in np.unique(shard[shard >= 0]):
            path = index.shards[number]
            embeddings = _read_embeddings(path)
            mine = np.flatnonzero(shard == number)
            if embeddings is None:  # vanished or damaged since it was indexed: encode again
                index.drop(int(number))
                continue
            self.touched.add(path)
            found[mine] = True
            for i, r in zip(mine, row[mine]):
                rows[int(i)] = embeddings[r]
        if not rows:
            return found, None
        return found, np.stack([rows[i] for i in np.flatnonzero(found)])

    def add(self, instruction: str, texts: list[str], embeddings: np.ndarray) -> Path | None:
        """Write one shard atomically and index it; returns its path (None for no texts)."""
        if not texts:
            return None
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings")
        index = self._index(instruction)  # first, so the new shard is indexed exactly once
        folder = self._folder(instruction)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_identity()
        keys = text_keys(texts)
        path = folder / (digest(keys.tobytes()) + _SHARD_SUFFIX)
        _atomic_savez(path, keys=keys, embeddings=np.ascontiguousarray(embeddings, dtype=np.float32))
        index.add(path, keys)
        self.touched.add(path)
        return path

    def release(self) -> int:
        """Delete the shards this store wrote or read (unless ``keep``); returns how many.

        Call it once every task that used them has its result file. Only these files go: a
        concurrent job of the same checkpoint keeps its own shards (and re-encodes a deleted one
        it had indexed, rather than trusting a missing file).
        """
        if self.keep:
            return 0
        removed = 0
        for path in sorted(self.touched):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        self.touched.clear()
        self._indexes.clear()
        for folder in sorted(self.dir.glob("*"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if self.dir.is_dir() and [p.name for p in self.dir.iterdir()] == ["identity.json"]:
            (self.dir / "identity.json").unlink()
            self.dir.rmdir()
        return removed

    def _write_identity(self) -> None:
        path = self.dir / "identity.json"
        if not path.exists():
            atomic_write_text(path, json.dumps({"identity": self.identity}, indent=1))


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary file in the same folder, fsync, then rename into place."""
    from pairrel.io import atomic_open

    with atomic_open(path) as handle:
        np.savez(handle, **arrays)


def _read_keys(path: Path) -> np.ndarray | None:
    """The shard's keys, or None when the shard is not to be trusted."""
    try:
        with np.load(path) as shard:
            keys = shard["keys"]
            n_rows = _member_rows(shard, "embeddings")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if keys.dtype != np.uint64 or keys.ndim != 2 or keys.shape[1] != 2 or n_rows != len(keys):
        return None
    if digest(keys.tobytes()) + _SHARD_SUFFIX != path.name:
        return None
    return keys


def _member_rows(shard, name: str) -> int:
    """Rows of an npz member read from its header only (the data stays on disk)."""
    fmt = np.lib.format
    with shard.zip.open(name + ".npy") as member:
        version = fmt.read_magic(member)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read_header(member)
    return shape[0] if shape else -1


def _read_embeddings(path: Path) -> np.ndarray | None:
    try:
        with np.load(path) as shard:
            return shard["embeddings"]  # zipfile checks the member's CRC while reading it
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
