"""scripts/env.sh and `make clean`: ROS 2's logs and the built-engine cache of everything run through the project's
environment (`make test`, `make demo`, a shell that sourced env.sh) stay in the project tree unless the shell names
other folders, and `make clean` removes them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sourced(tmp_path: Path, **env: str) -> dict[str, str]:
    script = f". {ROOT / 'scripts' / 'env.sh'} --no-install && env"
    out = subprocess.run(["/bin/bash", "-c", script], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_ros_logs_and_engines_go_into_the_project_unless_named(tmp_path):
    env = sourced(tmp_path)
    assert env["ROS_LOG_DIR"] == str(ROOT / "log" / "ros")
    assert env["FER_ROS_ENGINE_CACHE"] == str(ROOT / ".cache" / "engines")
    # folders the shell names are kept
    env = sourced(tmp_path, ROS_LOG_DIR=str(tmp_path / "logs"), FER_ROS_ENGINE_CACHE=str(tmp_path / "engines"))
    assert env["ROS_LOG_DIR"] == str(tmp_path / "logs")
    assert env["FER_ROS_ENGINE_CACHE"] == str(tmp_path / "engines")


def test_sh_gets_one_line_and_a_failure_not_a_broken_environment(tmp_path):
    if shutil.which("dash") is None:
        pytest.skip("no dash here")
    proc = subprocess.run(["dash", "-c", f". {ROOT / 'scripts' / 'env.sh'} --no-install && echo sourced"],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and "sourced" not in proc.stdout
    assert len(proc.stderr.splitlines()) == 1 and "bash" in proc.stderr, proc.stderr


def test_a_nounset_caller_sources_the_install_space_and_keeps_its_setting(tmp_path):
    # colcon's install/local_setup.sh reads variables that may be unset (COLCON_PREFIX_PATH among them)
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    for name in ("env.sh", "ros_mode.sh"):
        shutil.copy(ROOT / "scripts" / name, project / "scripts" / name)
    (project / "install").mkdir()
    (project / "install" / "local_setup.sh").write_text('_prefixes="$COLCON_PREFIX_PATH"\nexport FROM_INSTALL=1\n')
    report = 'echo "install=$FROM_INSTALL"; case $- in *u*) echo nounset=on ;; *) echo nounset=off ;; esac'
    for mode, nounset in (("set -u", "on"), ("set +u", "off")):
        out = subprocess.run(["/bin/bash", "-c", f"{mode}; . {project / 'scripts' / 'env.sh'} && {report}"],
                             env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["install=1", f"nounset={nounset}"]


def test_make_clean_removes_logs_and_engines(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make here")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    made = [tmp_path / "log" / "ros" / "a.log", tmp_path / ".cache" / "engines" / "model" / "entry.json",
            tmp_path / ".venv" / "pyvenv.cfg", tmp_path / ".setup-stamps" / "venv"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "kept.txt").write_text("x")
    subprocess.run(["make", "-C", str(tmp_path), "clean"], capture_output=True, text=True, timeout=60, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "kept.txt"]
