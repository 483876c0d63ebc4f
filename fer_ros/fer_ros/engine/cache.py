"""On-disk cache of built engines (TensorRT plans, optimised ONNX graphs).

An entry is a folder `<root>/<model name>-<backend>-<name hash>-<key>/` where key hashes everything the built
artefact depends on: the model files' sha256 (from the manifest), the backend, the runtime's version, the GPU name
and compute capability, precision, batch profile. The folder name shows the model name with what a file name cannot
hold replaced and long names cut; the name hash (of the exact model name and backend) keeps apart models whose names
read the same there ("fer-a", "fer_a"). Built files are listed with their sha256 in the entry's `entry.json`, written
last, so an interrupted build or a damaged file reads as "no entry" and is rebuilt, never loaded; an entry with no
built file is never recorded. Building an entry removes the entries it replaces: those of the same model name (the
exact name `entry.json` records) and backend built for the same settings (device, GPU, precision, processor: every
context field but the model files' sha256, the runtime versions and the batch profile) that differ in one of the
others. Entries for other settings stay, so two nodes running the model with, say, fp16 and fp32 keep one each.
A folder without `entry.json` (a build in progress, or an interrupted one) is left alone; the next build of its key
clears it.

A built engine is code for its runtime (a TensorRT plan; torch-tensorrt's exported program may even be unpickled),
so only entries this user alone can have written are loaded: the entry folder, `entry.json` and every built file
must be owned by the user running fer_ros and not writable by group or others (builds are made so: folders 0700,
files 0600). Anything else reads as "no entry" and is rebuilt; a folder that cannot be made private is an error
that names it.

Root: the `cache_dir` argument, else $FER_ROS_ENGINE_CACHE, else $XDG_CACHE_HOME/fer_ros/engines
(~/.cache/fer_ros/engines).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

from fer_ros.manifest import sha256_file

ENTRY_FILE = "entry.json"
#: context fields a newer build replaces: an entry that differs from a new one only in these is stale
REPLACED_BY_REBUILD = ("onnx_sha256", "state_dict_sha256", "network_sha256", "onnxruntime", "tensorrt", "runtime",
                       "batch")


def default_root() -> Path:
    env = os.environ.get("FER_ROS_ENGINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fer_ros" / "engines"


def cache_key(context: dict) -> str:
    """16 hex digits over the JSON of `context` (sorted keys)."""
    return hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name)[:60] or "model"


def not_private(path: Path, folder: bool) -> str | None:
    """Why `path` could have been written by someone else (None when it is a folder or plain file, as asked, owned
    by this user and writable by nobody else). Symbolic links are not followed."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not (stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)):
        return f"{path} is not a {'folder' if folder else 'plain file'}"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"{path} belongs to user id {st.st_uid}, not to this user ({os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'group and others' if st.st_mode & stat.S_IWOTH else 'its group'}"
    return None


class CacheEntry:
    def __init__(self, root: Path, model_name: str, backend: str, context: dict) -> None:
        self.root = Path(root)
        self.context = dict(context)
        # the context as entry.json holds it (JSON types, what json cannot write as its str): what entries compare
        self.stored_context = json.loads(json.dumps(self.context, sort_keys=True, default=str))
        self.key = cache_key(self.context)
        self.model_name, self.backend = model_name, backend
        name_hash = hashlib.sha256(json.dumps([model_name, backend]).encode()).hexdigest()[:8]
        self.prefix = f"{_safe(model_name)}-{_safe(backend)}-{name_hash}-"
        self.path = self.root / f"{self.prefix}{self.key}"
        self.refused: str | None = None  # why an existing entry was not trusted (see the module docstring)

    def file(self, name: str) -> Path:
        return self.path / name

    def is_valid(self) -> bool:
        """True when the entry was completed for this exact context, by this user alone, and its files are
        intact."""
        self.refused = None
        try:
            meta = json.loads((self.path / ENTRY_FILE).read_text())
        except (OSError, ValueError):
            return False
        self.refused = not_private(self.path, True) or not_private(self.path / ENTRY_FILE, False)
        if self.refused is None and isinstance(meta, dict) and isinstance(meta.get("files"), dict):
            self.refused = next(filter(None, (not_private(self.path / n, False) for n in meta["files"])), None)
        if self.refused is not None or not isinstance(meta, dict):
            return False
        if meta.get("context") != self.stored_context:
            return False
        files = meta.get("files")
        if not isinstance(files, dict) or not files:
            return False
        for name, digest in files.items():
            f = self.path / name
            if not f.is_file() or sha256_file(f) != digest:
                return False
        return True

    def prepare(self) -> Path:
        """An empty folder for a new build (an invalid old one is cleared)."""
        if self.path.exists() or self.path.is_symlink():
            if self.path.is_symlink() or not self.path.is_dir():
                self.path.unlink(missing_ok=True)
            else:
                shutil.rmtree(self.path, ignore_errors=True)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        reason = not_private(self.path, True)
        if reason is not None:
            raise PermissionError(f"engine cache folder {self.path} cannot be made private ({reason}); remove it "
                                  f"or set FER_ROS_ENGINE_CACHE to a folder of your own")
        return self.path

    def commit(self, names: list[str] | None = None) -> None:
        """Record the built files (all files in the folder by default) and drop stale entries of this model.
        FileNotFoundError, and nothing recorded, when there is no built file or a named one is missing."""
        if names is None:
            names = sorted(p.name for p in self.path.iterdir() if p.is_file() and p.name != ENTRY_FILE)
        missing = [n for n in names if not (self.path / n).is_file()]
        if not names or missing:
            raise FileNotFoundError(f"engine cache entry {self.path}: "
                                    + (f"built file {', '.join(missing)} missing" if missing else "nothing was built")
                                    + "; not recorded, built again at the next load")
        for n in names:
            os.chmod(self.path / n, 0o600)
        files = {n: sha256_file(self.path / n) for n in names}
        tmp = self.path / (ENTRY_FILE + ".tmp")
        record = {"model": self.model_name, "backend": self.backend, "context": self.stored_context, "files": files}
        tmp.write_text(json.dumps(record, sort_keys=True, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path / ENTRY_FILE)
        self.prune_stale()

    def _settings(self, context: dict) -> dict:
        return {k: v for k, v in context.items() if k not in REPLACED_BY_REBUILD}

    def prune_stale(self) -> list[Path]:
        """Remove the entries this one replaces (see the module docstring); returns their folders."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        mine = self._settings(self.stored_context)
        for other in self.root.iterdir():
            if other == self.path or other.is_symlink() or not other.is_dir() or not other.name.startswith(self.prefix):
                continue
            try:
                meta = json.loads((other / ENTRY_FILE).read_text())
            except (OSError, ValueError):
                continue  # a build in progress or an interrupted one: not known to be stale
            owner = (meta.get("model"), meta.get("backend")) if isinstance(meta, dict) else None
            if owner != (self.model_name, self.backend):
                continue  # another model's (or backend's) entry whose folder name starts the same
            context = meta.get("context")
            if isinstance(context, dict) and self._settings(context) == mine:
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other)
        return removed
