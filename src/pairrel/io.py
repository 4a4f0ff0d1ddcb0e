"""Whole-or-absent file writes and path-naming reads, used for every file pairrel writes.

Writers: the content goes to a temporary name in the target's folder (same file system) and is
renamed over the target with ``os.replace``, which POSIX makes atomic: a reader, or a later
stage after a crash, sees the old file or the new one, never a part. The file is flushed and
fsync'ed before the rename so a power loss cannot leave the new name over empty blocks.
Files get the mode an ordinary ``open(path, "w")`` would give, ``0o666 & ~umask`` (0644 under
the common umask 022), not ``mkstemp``'s 0600, so results shared in a group stay readable;
:func:`atomic_dir` applies the same modes to what libraries wrote into the folder (a
checkpoint's safetensors files).

Readers: :func:`read_json` and :func:`read_jsonl` raise :class:`FileFormatError` (a
``ValueError``) that names the file and, where there is one, the line — never a bare decoder
message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

_UMASK_LOCK = threading.Lock()


class FileFormatError(ValueError):
    """A file that exists but cannot be parsed; the message starts with its path."""


def current_umask() -> int:
    """The process umask (reading it means setting it, so briefly and under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _temp_name(path: Path) -> Path:
    # pid + thread id: two writers of the same target never share a temporary file.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator:
    """A binary handle whose content replaces ``path`` whole when the block ends without an
    exception (temporary file with the umask's mode, fsync, rename); else ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temporary file, fsync, rename)."""
    with atomic_open(path) as handle:
        handle.write(data)


def apply_umask(folder: Path) -> None:
    """Give everything under ``folder`` the mode a plain ``open``/``mkdir`` would (``0o666`` or,
    for executables and folders, ``0o777``, less the umask). Libraries that write through
    ``mkstemp`` (safetensors' ``save_file``, so every adapter and trainer state) leave 0600."""
    umask = current_umask()
    for child in folder.rglob("*"):
        if child.is_symlink():
            continue
        executable = child.is_dir() or child.stat().st_mode & 0o111
        os.chmod(child, (0o777 if executable else 0o666) & ~umask)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (UTF-8 by default)."""
    atomic_write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON with a final newline, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; on success it replaces ``path`` whole.

    ``with atomic_dir(out) as tmp: write files into tmp``. On an exception the temporary folder
    is removed and ``path`` is left as it was. An existing ``path`` is first renamed aside and
    removed after the new folder is in place, so at every moment ``path`` is absent, the old
    folder or the new one (a directory cannot be renamed over a non-empty one in one step).
    The temporary names start with a dot, so globs for the final names never see them.
    Everything in the folder gets the umask's modes (see :func:`apply_umask`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()  # 0o777 & ~umask, unlike mkdtemp's 0700
    try:
        yield tmp
        apply_umask(tmp)
        for child in tmp.rglob("*"):  # contents reach the disk before the name does
            if child.is_file():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        old = path.with_name(f".{path.name}.old-{os.getpid()}-{threading.get_ident()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_text(path: str | Path, error: type[Exception] = FileFormatError, skip_bom: bool = False) -> str:
    """UTF-8 text of ``path``; undecodable bytes raise ``error`` naming the file and line.
    ``skip_bom``: a leading byte-order mark is not part of the text (Windows editors write one)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig" if skip_bom else "utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}: line {line}: not valid UTF-8 (byte offset {err.start}); save the file as UTF-8") from None


def read_json(path: str | Path) -> Any:
    """Parsed JSON of ``path``; errors name the file and line."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None


def read_jsonl(path: str | Path, drop_partial_last_line: bool = False) -> list[Any]:
    """One parsed JSON value per non-blank line of ``path``; errors name the file and line.

    ``drop_partial_last_line``: a last line that does not end with a newline and does not parse
    is what an append cut short by a crash leaves; it is dropped instead of raising. Any other
    bad line is an error.
    """
    path = Path(path)
    text = read_text(path)
    lines = text.split("\n")
    complete = text.endswith("\n") or not text
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if drop_partial_last_line and number == len(lines) and not complete:
                break
            raise FileFormatError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
    return records


def iter_json_objects(path: str | Path, error: type[Exception] = FileFormatError,
                      on_blank: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line number, object)`` for each non-blank line of a JSONL file, never holding
    the file in memory: the one JSONL reader (metrics, recipes, user tasks, data sources).

    A line that is not a JSON object (or not UTF-8) raises ``error`` with the message
    ``{path}: line {N}: ...``. A leading byte-order mark is skipped (Windows editors write one).
    A blank line is skipped, after ``on_blank(line number)`` when given (a caller counting them).
    """
    path = Path(path)
    with open(path, "rb") as lines:  # bytes, decoded per line: a decoding error names its line
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise error(f"{path}: line {number}: not valid UTF-8; save the file as UTF-8") from None
            if not line.strip():
                if on_blank is not None:
                    on_blank(number)
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}: line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(value, dict):
                raise error(f"{path}: line {number}: expected a JSON object, got {type(value).__name__}")
            yield number, value


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
