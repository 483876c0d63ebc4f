"""The launch tests' guards: a missing piece of the launch stack skips only the tests that need it, and says which
piece is missing."""
from __future__ import annotations

import builtins
import subprocess
import sys
import types
from pathlib import Path

import pytest

from launch_stack import missing_launch_stack

TEST_DIR = Path(__file__).resolve().parent


@pytest.fixture
def break_import(monkeypatch):
    """break_import(module, error): importing `module` raises `error` from now on in this test."""
    real_import = builtins.__import__
    broken = {}

    def fake_import(name, *args, **kwargs):
        if name in broken:
            raise broken[name]
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    return broken.__setitem__


def test_without_launch_testing_the_reason_says_so(monkeypatch, break_import):
    monkeypatch.delitem(sys.modules, "launch_testing.pytest.hooks", raising=False)
    break_import("launch_testing", ModuleNotFoundError("No module named 'launch_testing'", name="launch_testing"))
    assert missing_launch_stack().startswith("launch_testing is not installed")


def test_a_launch_testing_folder_of_caches_only_counts_as_not_installed(monkeypatch, tmp_path):
    # what pip leaves of an uninstalled launch_testing: pytest's caches, which make the folder a namespace package
    (tmp_path / "launch_testing" / "__pycache__").mkdir(parents=True)
    (tmp_path / "launch_testing" / "__pycache__" / "__init__.cpython-312-pytest-8.4.2.pyc").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "launch_testing", None)   # so that sys.modules gets back what it had
    for name in [n for n in sys.modules if n == "launch_testing" or n.startswith("launch_testing.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert missing_launch_stack().startswith("launch_testing is not installed")


def test_without_composition_interfaces_the_reason_names_it(monkeypatch, break_import):
    # launch_testing and its plugin are there, launch_ros is too, but the messages it imports are not built.
    monkeypatch.setitem(sys.modules, "launch_testing.pytest.hooks", types.ModuleType("launch_testing.pytest.hooks"))
    break_import("launch_ros", ModuleNotFoundError("No module named 'composition_interfaces'",
                                                   name="composition_interfaces"))
    reason = missing_launch_stack()
    assert "composition_interfaces" in reason and "make setup" in reason
    assert not reason.startswith("launch_ros is not installed")


def test_a_module_level_skip_skips_only_its_module(tmp_path):
    pytest.importorskip("launch_testing", reason="launch_testing is not installed: without its pytest plugin a "
                                                 "module-level skip stays in its module anyway")
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TEST_DIR)!r})\n"
        "from collect_guard import pytest_pycollect_makemodule  # noqa: F401\n")
    (tmp_path / "test_needs_something.py").write_text(
        "import pytest\npytest.importorskip('no_such_module_here', reason='no_such_module_here is missing')\n\n"
        "def test_it():\n    pass\n")
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 1 skipped" in out.stdout, out.stdout
    assert "no_such_module_here is missing" in out.stdout
