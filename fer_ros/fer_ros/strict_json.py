"""Strict JSON out: NaN and infinity are not JSON, so every report and result file the tools write holds null
where a figure is not finite (a NaN score, a rate over no time)."""
from __future__ import annotations

import json
import math
from pathlib import Path


def finite_json(obj):
    """`obj` (dicts, lists, tuples, numbers, strings) with every NaN or infinity replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def dumps(obj, indent: int | None = None) -> str:
    """`obj` as strict JSON text (non-finite numbers as null)."""
    return json.dumps(finite_json(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj, indent: int | None = None) -> Path:
    """Write `obj` to `path` as strict JSON (non-finite numbers as null); returns the path."""
    path = Path(path)
    path.write_text(dumps(obj, indent) + "\n")
    return path
