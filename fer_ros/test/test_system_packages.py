"""scripts/system_packages.sh, which tells setup what to install with apt: it must see the libraries a machine has
even where /sbin and /usr/sbin (ldconfig's home) are not on PATH, as for a Debian user, or every `make setup`
would call apt-get again."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system_packages.sh"
LIBS = {"libgl1": "libGL.so.1", "libglib2.0-0": "libglib-2.0.so.0", "libegl1": "libEGL.so.1",
        "libgles2": "libGLESv2.so.2"}


def missing(path: str, python: str = sys.executable) -> list[str]:
    env = {"PATH": path, "PYTHON": python}
    out = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


def ldconfig_libs() -> str:
    found = shutil.which("ldconfig", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        pytest.skip("no ldconfig on this machine (not a glibc system)")
    return subprocess.run([found, "-p"], capture_output=True, text=True, check=True).stdout


def test_libraries_found_without_sbin_on_path():
    listing = ldconfig_libs()
    present = {pkg for pkg, so in LIBS.items() if f"{so} " in listing}
    if not present:
        pytest.skip("none of the graphics libraries is installed here")
    asked = missing("/usr/bin:/bin")
    assert not present & set(asked), f"asks apt for libraries ldconfig lists: {sorted(present & set(asked))}"
    assert asked == missing("/usr/sbin:/sbin:/usr/bin:/bin")


def test_lists_what_is_absent(tmp_path):
    # a PATH with only the tools the script itself runs: no cmake, g++ or make; a Python that cannot make a venv
    for tool in ("bash", "grep"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    no_venv = tmp_path / "python-without-venv"
    no_venv.write_text("#!/bin/sh\nexit 1\n")
    no_venv.chmod(0o755)
    asked = missing(str(tmp_path), python=str(no_venv))
    assert {"python3-venv", "cmake", "g++", "make"} <= set(asked)
    # it prints package names and nothing else
    assert set(missing("/usr/bin:/bin")) <= set(LIBS) | {"python3-venv", "cmake", "g++", "make"}
