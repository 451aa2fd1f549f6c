"""The export cache: an HF checkpoint directory is exported to runtime weights once, into
``$DYNIN_RT_CACHE`` (default ~/.cache/dynin_rt), and reused while nothing that changes the export
has changed.

- The key covers everything the export reads or depends on: the checkpoint's path, config.json and
  tokenizer files by content, every other file by size and modification time (hashing 16 GB of
  shards on every load would cost more than it saves), the dtype, the text vocabulary override and
  the runtime weight format version.
- An export is written to a private temporary directory and renamed into place, so a reader never
  sees a half-written entry; a lock file serialises processes exporting the same key, so two of
  them do not both spend the export and neither corrupts the other.
- An entry that fails validation (a manifest or weight file that is missing, unreadable or shorter
  than its header says, e.g. written by an older dynin_rt that exported in place and was killed) is
  removed and rebuilt.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager

from .errors import CheckpointError
from .export.weights import FORMAT_VERSION, MANIFEST, TOKENIZER_FILES, export_weights, read_manifest

CONTENT_HASHED = ("config.json",) + TOKENIZER_FILES


def cache_root() -> str:
    return os.environ.get("DYNIN_RT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dynin_rt"))


def export_key(hf_dir: str, dtype: str, text_vocab_size: int | None = None) -> str:
    h = hashlib.sha256(f"{os.path.abspath(hf_dir)}|{dtype}|{text_vocab_size}|format{FORMAT_VERSION}".encode())
    for name in sorted(os.listdir(hf_dir)):
        path = os.path.join(hf_dir, name)
        if not os.path.isfile(path):
            continue
        h.update(name.encode())
        if name in CONTENT_HASHED:
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        else:
            st = os.stat(path)
            h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def is_complete(directory: str) -> bool:
    """Whether an exported directory can be loaded: its manifest reads and its weight file's header
    matches the file (the C++ loader's own validation, which catches a truncated file)."""
    from . import _native

    try:
        manifest = read_manifest(directory)
        _native._C.inspect_safetensors(os.path.join(directory, manifest["weights"]))
    except (CheckpointError, OSError, KeyError, TypeError, ValueError):
        return False
    return True


@contextmanager
def _locked(path: str, wait: bool = True):
    """Holds the lock file `path` (lock files are never deleted: a process waiting on a deleted one
    would hold a lock nobody else sees). Yields False when wait=False and another process holds it."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_export(hf_dir: str, dtype: str, text_vocab_size: int | None = None, progress: bool | None = None) -> str:
    """The exported directory of hf_dir in the cache, exporting it first when needed."""
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    key = export_key(hf_dir, dtype, text_vocab_size)
    out = os.path.join(root, key)
    if is_complete(out):
        return out
    with _locked(out + ".lock"):
        if is_complete(out):  # another process finished it while we waited
            return out
        if os.path.exists(out):
            shutil.rmtree(out)  # stale: half-written or damaged
        tmp = tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root)
        try:
            export_weights(hf_dir, tmp, dtype=dtype, text_vocab_size=text_vocab_size, progress=progress)
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def entries() -> list[dict]:
    """What the cache holds: one dict per exported model (key, path, bytes, complete, last use, and
    for complete entries the dtype and source checkpoint)."""
    root = cache_root()
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if not os.path.isdir(path) or ".tmp-" in name:
            continue
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
        info = {"key": name, "path": path, "bytes": size, "complete": is_complete(path),
                "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))}
        if info["complete"]:
            manifest = read_manifest(path)
            source = manifest.get("source")
            info.update(dtype=manifest.get("dtype"), source=source.get("path") if isinstance(source, dict) else None)
        out.append(info)
    return out


def clear(key: str | None = None) -> int:
    """Remove one entry (by key) or all of them, with the leftovers of exports that died; an export
    running in another process is left alone. Returns the bytes freed."""
    root = cache_root()
    freed = 0
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        entry_key = name.split(".tmp-")[0]
        if not os.path.isdir(path) or (key is not None and entry_key != key):
            continue
        with _locked(os.path.join(root, entry_key + ".lock"), wait=".tmp-" not in name) as held:
            if held:
                freed += sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
                shutil.rmtree(path, ignore_errors=True)
    return freed
