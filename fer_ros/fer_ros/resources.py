"""Where fer_ros finds the files it ships (models, message definitions): the ROS install space through the ament
index first, then the source tree, so the same code works after `colcon build` and from a plain checkout."""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "agn8_ferplus_kdef_ckplus"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository: fer_ros/, fer_msgs/


def shipped_candidates(package: str, *relative: str) -> list[Path]:
    """Possible locations of `relative` under `package`'s share folder, then under its source folder."""
    out = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            out.append(Path(get_package_share_directory(package)).joinpath(*relative))
        except (PackageNotFoundError, OSError):  # OSError: no ROS environment (AMENT_PREFIX_PATH unset)
            pass
    except ImportError:
        pass
    out.append(SOURCE_ROOT.joinpath(package, *relative))
    return out


def first_existing(candidates: list[Path], marker: str | None = None) -> Path | None:
    """The first candidate that exists (or holds `marker`), else None."""
    for c in candidates:
        if (c / marker).is_file() if marker else c.exists():
            return c
    return None


def default_model_dir() -> Path:
    """The shipped default model's folder (install space first); the source-tree path when neither exists."""
    candidates = shipped_candidates("fer_ros", "models", DEFAULT_MODEL)
    return first_existing(candidates, "manifest.json") or candidates[-1]
