"""Which model the node tests run: the shipped default when it is there (its class names are the ones checked),
else a tiny untrained model exported once per test session."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_ros.resources import DEFAULT_MODEL

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL


@dataclass(frozen=True)
class NodeTestModel:
    path: Path
    class_names: tuple[str, ...]
    shipped: bool


def model_for_tests(base: Path) -> NodeTestModel:
    """The shipped model, or the tiny model exported under `base` (reused by later calls with the same base).
    Skips the calling test when this checkout has no inference engine module."""
    import pytest
    pytest.importorskip("fer_ros.engine", reason="fer_ros.engine (the node's inference engine) is not in this checkout")
    from fer_ros.manifest import load_manifest
    if (SHIPPED_MODEL / "manifest.json").is_file():
        return NodeTestModel(SHIPPED_MODEL, tuple(load_manifest(SHIPPED_MODEL).class_names), True)
    from bag_helpers import tiny_model_dir
    path = tiny_model_dir(base)
    return NodeTestModel(path, tuple(load_manifest(path).class_names), False)
