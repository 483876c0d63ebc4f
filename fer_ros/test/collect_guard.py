"""A pytest hook that keeps a module-level skip to its own module.

launch_testing's pytest plugin (present wherever launch_testing is installed) imports every test module while
deciding whether it is a launch test, outside pytest's own module import; a module-level `pytest.skip` or
`importorskip` raised there escapes as a skip of the whole session. This wrapper catches it and hands the file to
pytest's ordinary collection, which imports it again and skips that module alone, with its reason. conftest.py
imports the hook, which registers it.
"""
from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path, parent):
    try:
        return (yield)
    except pytest.skip.Exception:
        return pytest.Module.from_parent(parent, path=module_path)
