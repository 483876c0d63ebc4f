"""scripts/system_packages.sh, which tells setup what to install with apt: it must see the libraries a machine has
even where /sbin and /usr/sbin (ldconfig's home) are not on PATH, as for a Debian user, or every `make setup`
would call apt-get again. It names the packages of the interpreter the venv is made from: its development headers
(Python.h, which the fer_msgs build compiles against) and, for another interpreter than Debian's default python3, its
own venv package."""
from __future__ import annotations

import re
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
    known = set(LIBS) | {"python3-venv", "cmake", "g++", "make"}
    assert all(name in known or re.fullmatch(r"python3\.\d+-(dev|venv)", name) for name in missing("/usr/bin:/bin"))


def other_python(tmp_path: Path, version: str, headers: bool, venv: bool = True) -> Path:
    """An interpreter that says it is Python `version`, with its include folder (sysconfig's) in tmp_path, holding
    Python.h or not, and with or without the venv module."""
    include = tmp_path / "include"
    include.mkdir(parents=True)
    if headers:
        (include / "Python.h").write_text("")
    fake = tmp_path / f"python{version}"
    fake.write_text(f"""#!{sys.executable}
import sys, sysconfig
real_paths = sysconfig.get_paths
sysconfig.get_paths = lambda *a, **k: {{**real_paths(*a, **k), "include": {str(include)!r}}}
sys.version_info = tuple(int(n) for n in {version!r}.split(".")) + (0, "final", 0)
if not {venv!r}:
    sys.modules["ensurepip"] = None
sys.argv = sys.argv[1:]
exec(compile(sys.argv[1], "<string>", "exec"))
""")
    fake.chmod(0o755)
    return fake


def default_python_version() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return None
    return subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def not_the_default_version() -> str:
    return "3.13" if default_python_version() == "3.12" else "3.12"


def test_names_the_development_headers_of_the_interpreter_used(tmp_path):
    version = not_the_default_version()
    asked = missing("/usr/bin:/bin", python=str(other_python(tmp_path / "without", version, headers=False)))
    assert f"python{version}-dev" in asked
    assert not any(name.endswith("-venv") for name in asked)   # its venv module is there
    # headers that are there are not asked for
    asked = missing("/usr/bin:/bin", python=str(other_python(tmp_path / "with", version, headers=True)))
    assert not any(name.endswith("-dev") for name in asked)


def test_another_interpreter_than_the_default_python3_gets_its_own_venv_package(tmp_path):
    version = not_the_default_version()
    asked = missing("/usr/bin:/bin", python=str(other_python(tmp_path, version, headers=True, venv=False)))
    assert f"python{version}-venv" in asked and "python3-venv" not in asked


def test_the_default_python3_gets_python3_venv(tmp_path):
    version = default_python_version()
    if version is None:
        pytest.skip("no /usr/bin/python3 here")
    asked = missing("/usr/bin:/bin", python=str(other_python(tmp_path, version, headers=False, venv=False)))
    assert "python3-venv" in asked and f"python{version}-dev" in asked
