"""The package's layout, checked on its source: the runtime core imports none of the shells (ros/, tools/) nor the
training code, nothing outside ros/ imports ROS, training/ does not import the tools, the tools import of training/
only training/data/, ros/ imports of tools/ only tools/bagtools.py, and no module is longer than 500 lines."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_ros"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
ROS_IMPORTS = ("rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "builtin_interfaces", "diagnostic_msgs",
               "geometry_msgs", "fer_msgs", "hri_msgs", "fer_ros.ros")
MAX_LINES = 500
SHELLS = ("fer_ros.ros", "fer_ros.tools", "fer_ros.training")
# what a shell may import of the other shells (besides the core and itself)
OPEN_TO = {"tools": ("fer_ros.training.data",), "ros": ("fer_ros.tools.bagtools",)}


def part(path: Path) -> str:
    """"ros", "tools", "training" or "core": where a module sits in the package."""
    first = path.relative_to(PACKAGE).parts[0]
    return first if first in ("ros", "tools", "training") else "core"


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (at the top or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def closed_to(name: str, where: str) -> bool:
    """Whether `name` is a module of another shell than `where` that is not open to it: neither under one of
    OPEN_TO[where] nor a package above one (fer_ros.training, which `from fer_ros.training.data import x` loads
    first)."""
    allowed = OPEN_TO.get(where, ())
    if not under(name, SHELLS) or under(name, (f"fer_ros.{where}",)) or under(name, allowed):
        return False
    return not any(a.startswith(name + ".") for a in allowed)


def test_imports_follow_the_layout():
    problems = []
    for path in MODULES:
        names, where, rel = imported(path), part(path), path.relative_to(PACKAGE)
        if where != "ros":
            problems += [f"{rel} imports {n} (ROS) outside ros/" for n in sorted(names) if under(n, ROS_IMPORTS)]
        if where == "core":
            problems += [f"the core module {rel} imports {n}" for n in sorted(names)
                         if under(n, ("fer_ros.ros", "fer_ros.tools", "fer_ros.training"))]
        if where == "training":
            problems += [f"{rel} imports {n} (a tool)" for n in sorted(names) if under(n, ("fer_ros.tools",))]
        if where in OPEN_TO:  # (fer_ros.ros outside ros/ is reported above)
            problems += [f"{rel} imports {n}: {where}/ may import of the other shells only {', '.join(OPEN_TO[where])}"
                         for n in sorted(names) if closed_to(n, where) and not under(n, ROS_IMPORTS)]
    assert not problems, "\n".join(problems)


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"
