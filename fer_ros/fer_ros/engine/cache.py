"""On-disk cache of built engines (TensorRT plans, optimised ONNX graphs).

An entry is a folder `<root>/<model name>-<backend>-<key>/` where key hashes everything the built artefact
depends on: the model file's sha256 (from the manifest), the backend, the runtime's version, the GPU name and
compute capability, precision, batch profile. Built files are listed with their sha256 in the entry's
`entry.json`, written last, so an interrupted build or a damaged file reads as "no entry" and is rebuilt, never
loaded. Building an entry removes the other entries of the same model name and backend: they are stale.

Root: the `cache_dir` argument, else $FER_ROS_ENGINE_CACHE, else $XDG_CACHE_HOME/fer_ros/engines
(~/.cache/fer_ros/engines).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from fer_ros.manifest import sha256_file

ENTRY_FILE = "entry.json"


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


class CacheEntry:
    def __init__(self, root: Path, model_name: str, backend: str, context: dict) -> None:
        self.root = Path(root)
        self.context = dict(context)
        self.key = cache_key(self.context)
        self.prefix = f"{_safe(model_name)}-{_safe(backend)}-"
        self.path = self.root / f"{self.prefix}{self.key}"

    def file(self, name: str) -> Path:
        return self.path / name

    def is_valid(self) -> bool:
        """True when the entry was completed for this exact context and its files are intact."""
        try:
            meta = json.loads((self.path / ENTRY_FILE).read_text())
        except (OSError, ValueError):
            return False
        if meta.get("context") != json.loads(json.dumps(self.context, sort_keys=True, default=str)):
            return False
        files = meta.get("files") or {}
        if not files:
            return False
        for name, digest in files.items():
            f = self.path / name
            if not f.is_file() or sha256_file(f) != digest:
                return False
        return True

    def prepare(self) -> Path:
        """An empty folder for a new build (an invalid old one is cleared)."""
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def commit(self, names: list[str] | None = None) -> None:
        """Record the built files (all files in the folder by default) and drop stale entries of this model."""
        if names is None:
            names = sorted(p.name for p in self.path.iterdir() if p.is_file() and p.name != ENTRY_FILE)
        files = {n: sha256_file(self.path / n) for n in names}
        tmp = self.path / (ENTRY_FILE + ".tmp")
        tmp.write_text(json.dumps({"context": self.context, "files": files}, sort_keys=True, indent=2,
                                  default=str) + "\n")
        tmp.replace(self.path / ENTRY_FILE)
        self.prune_stale()

    def prune_stale(self) -> list[Path]:
        removed = []
        if not self.root.is_dir():
            return removed
        for other in self.root.iterdir():
            if other.is_dir() and other.name.startswith(self.prefix) and other != self.path:
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other)
        return removed
