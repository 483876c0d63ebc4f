"""scripts/setup.sh, run offline in a copy of the project's scripts with a stand-in Python: the interpreter setup is
given (PYTHON) makes stand-in venvs whose python answers pip and colcon by writing down what it was asked, and runs
any other code against empty modules in place of torch, mediapipe, colcon and the rest. What is checked is setup's
own logic: which folders it refuses, when a failed pip fails it, what its stamps cover, which colcon builds."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The stand-in interpreter. Run as $PYTHON (outside a venv) it makes venvs with `-m venv`; run as a venv's
# bin/python it answers `-m pip` (failing `install` when FAKE_PIP_FAIL names one of its arguments; `uninstall`
# removing the files and the dist-info folder a RECORD in the venv's site-packages lists) and `-m colcon`
# (making the install folders colcon would). Every other call runs the real interpreter's code with the stub modules
# first on sys.path. FAKE_PY_EXE stands for another interpreter (its real path); a venv keeps the one it was made
# from.
FAKE_PYTHON = r'''#!{real} -S
import os, runpy, shutil, sys
from pathlib import Path

HERE = Path(__file__)
VENV = HERE.parent.parent if (HERE.parent.parent / "pyvenv.cfg").is_file() else None
args = sys.argv[1:]


def log(*words):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(" ".join(words) + "\n")


base = (VENV / "fake-base").read_text() if VENV else os.environ.get("FAKE_PY_EXE", "")
if base:
    sys.executable = sys._base_executable = base
if not VENV and args[:2] == ["-m", "venv"]:
    target = Path(args[-1])
    (target / "bin").mkdir(parents=True)
    shutil.copy(HERE, target / "bin" / "python")
    site = "true" if "--system-site-packages" in args else "false"
    (target / "pyvenv.cfg").write_text(f"include-system-site-packages = {{site}}\n")
    (target / "fake-base").write_text(base)
    (target / "bin" / "pip").write_text(f"#!{{target}}/bin/python\n")
    if site == "false":   # pip puts colcon's command into the venv; with the system's packages a system colcon may do
        (target / "bin" / "colcon").write_text(f"#!/bin/sh\nexec '{{target}}/bin/python' -m colcon \"$@\"\n")
        (target / "bin" / "colcon").chmod(0o755)
    log("venv", str(target))
    sys.exit(0)
if VENV and args[:2] == ["-m", "pip"]:
    log("pip", *args[2:])
    fail = os.environ.get("FAKE_PIP_FAIL")
    if args[2:3] == ["install"] and fail and any(fail in a for a in args):
        print("ERROR: No matching distribution found", file=sys.stderr)
        sys.exit(1)
    if args[2:3] == ["uninstall"]:
        for name in (a for a in args[3:] if not a.startswith("-")):
            for record in VENV.glob(f"lib/python*/site-packages/{{name}}-*.dist-info/RECORD"):
                for line in record.read_text().splitlines():
                    path = record.parent.parent / line.split(",")[0]
                    if path.is_file():
                        path.unlink()
                shutil.rmtree(record.parent)
    sys.exit(0)
if VENV and args[:2] == ["-m", "colcon"]:
    log("colcon", *args[2:])
    for pkg in ("fer_ros/lib/fer_ros", "fer_msgs"):
        Path("install", pkg).mkdir(parents=True, exist_ok=True)
    if any(a.endswith("composition_interfaces") for a in args):
        Path("install", "composition_interfaces").mkdir(parents=True, exist_ok=True)
    Path("build", "fer_msgs").mkdir(parents=True, exist_ok=True)
    Path("build", "fer_msgs", "CMakeCache.txt").write_text(os.getcwd())
    sys.exit(0)
sys.path.insert(0, {stubs!r})
if args[0] == "-c":
    sys.argv = ["-c", *args[2:]]
    exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
elif args[0] == "-":
    sys.argv = ["-", *args[1:]]
    exec(compile(sys.stdin.read(), "<stdin>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
'''
STUB_MODULES = ("torch", "onnxruntime", "mediapipe", "cv2", "rosbags", "colcon_core", "launch", "launch_testing",
                "ros2cli")


class Harness:
    def __init__(self, tmp_path: Path, project: Path):
        self.tmp = tmp_path
        self.project = project
        self.bin = tmp_path / "fakebin"
        self.bin.mkdir()
        stubs = tmp_path / "stubs"
        stubs.mkdir()
        for name in STUB_MODULES:
            (stubs / f"{name}.py").write_text("")
        (stubs / "numpy.py").write_text("def get_include():\n    return '/nowhere'\n")
        (stubs / "ai_edge_litert").mkdir()
        (stubs / "ai_edge_litert" / "__init__.py").write_text("")
        (stubs / "ai_edge_litert" / "interpreter.py").write_text("")
        self.python = self.bin / "python3"
        self.python.write_text(FAKE_PYTHON.format(real=sys.executable, stubs=str(stubs)))
        self.python.chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.log.touch()
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(self.python),
                    "FAKE_LOG": str(self.log), "FER_ROS_LAUNCH_STACK": str(tmp_path / "no-launch-stack")}
        make_project(project)

    def tool(self, name: str, body: str) -> Path:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
        return path

    def setup(self, check: bool = True, **env: str) -> str:
        proc = subprocess.run(["/bin/bash", str(self.project / "scripts" / "setup.sh")], env={**self.env, **env},
                              capture_output=True, text=True, timeout=120)
        out = proc.stdout + proc.stderr
        if check:
            assert proc.returncode == 0, out
        self.rc = proc.returncode
        return out

    def calls(self, first: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.split(" ", 1)[0] == first]

    def stamp(self, name: str) -> Path:
        return self.project / ".setup-stamps" / name


def make_project(project: Path) -> None:
    """The files setup.sh reads: its scripts (system_packages.sh answers that nothing is missing, so that apt is never
    called), the requirement files and the two packages' folders."""
    (project / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "env.sh", "ros_mode.sh", "repair_wheel_cmake.py"):
        shutil.copy(ROOT / "scripts" / name, project / "scripts" / name)
    (project / "scripts" / "system_packages.sh").write_text("exit 0\n")
    for req in ROOT.glob("requirements*.txt"):
        shutil.copy(req, project / req.name)
    for pkg in ("fer_msgs", "fer_ros"):
        (project / pkg).mkdir()
        (project / pkg / "package.xml").write_text(f"<package><name>{pkg}</name></package>\n")


def make_launch_stack(folder: Path) -> Path:
    (folder / "wheels").mkdir(parents=True)
    (folder / "composition_interfaces" / "srv").mkdir(parents=True)
    for name in ("launch-3.4.3-py3-none-any.whl", "ros2cli-0.32.2-py3-none-any.whl"):
        (folder / "wheels" / name).write_bytes(name.encode() * 10)
    (folder / "composition_interfaces" / "package.xml").write_text("<package/>\n")
    (folder / "composition_interfaces" / "srv" / "LoadNode.srv").write_text("string package_name\n---\nbool success\n")
    return folder


@pytest.fixture
def harness(tmp_path):
    return Harness(tmp_path, tmp_path / "work" / "fer_ros")


def test_a_path_with_whitespace_is_refused_before_anything_is_made(tmp_path):
    h = Harness(tmp_path, tmp_path / "my projects" / "fer_ros")
    out = h.setup(check=False)
    assert h.rc != 0
    message = [line for line in out.splitlines() if line.strip()]
    assert len(message) == 1 and "whitespace" in message[0] and "move" in message[0], out
    assert str(h.project) in message[0]
    assert sorted(p.name for p in h.project.iterdir()) == ["fer_msgs", "fer_ros", "requirements-launch.txt",
                                                           "requirements-litert.txt", "requirements-ros.txt",
                                                           "requirements.txt", "scripts"]
    assert h.log.read_text() == ""


@pytest.mark.parametrize("failing", ["requirements.txt", "requirements-launch.txt"])
def test_a_failed_pip_install_fails_setup_and_marks_nothing_done(harness, tmp_path, failing):
    h = harness
    h.env["FER_ROS_LAUNCH_STACK"] = str(make_launch_stack(tmp_path / "ros2-launch"))
    stamp, part = ("venv", "venv") if failing == "requirements.txt" else ("launch", "launch stack")
    for attempt in (1, 2):
        out = h.setup(check=False, FAKE_PIP_FAIL=failing)
        assert h.rc != 0, out
        assert "ERROR: No matching distribution found" in out   # pip's own words reach the user
        assert not h.stamp(stamp).exists() and f"{part} up to date" not in out
        assert len([c for c in h.calls("pip") if f"-r {failing}" in c]) == attempt   # pip runs again every time
    assert not h.calls("colcon")
    h.setup()
    assert h.stamp(stamp).exists()
    assert f"{part} up to date" in h.setup()


def test_colcon_runs_on_the_venvs_python_not_a_colcon_on_path(harness):
    # a sourced system ROS 2 whose colcon (on PATH, outside the venv) would write the system python into the scripts
    h = harness
    h.tool("ros2", "exit 0")
    h.tool("colcon", 'echo "system-colcon $*" >> "$FAKE_LOG"; mkdir -p install/fer_ros install/fer_msgs')
    ros = {"ROS_DISTRO": "jazzy", "AMENT_PREFIX_PATH": "/opt/ros/jazzy"}
    out = h.setup(**ros)
    assert "system-jazzy" in out
    assert not h.calls("system-colcon")
    builds = h.calls("colcon")
    assert len(builds) == 1 and " build --symlink-install " in builds[0]
    assert f"-DPython3_EXECUTABLE={h.project}/.venv/bin/python" in builds[0]
    assert "colcon workspace up to date" in h.setup(**ros)


def test_the_launch_stack_stamp_follows_the_files_contents_not_their_listing(harness, tmp_path):
    h = harness
    stack = make_launch_stack(tmp_path / "shared" / "ros2-launch")
    h.env["FER_ROS_LAUNCH_STACK"] = str(stack)
    assert "installing the ROS 2 launch stack" in h.setup()
    wheel_installs = len(h.calls("pip"))
    # another ls time style, files older than six months, the folder copied again with the same files
    assert "launch stack up to date" in h.setup(TIME_STYLE="full-iso")
    assert "launch stack up to date" in h.setup(TIME_STYLE="+%s", LC_ALL="C")
    for path in stack.rglob("*"):
        os.utime(path, (946684800, 946684800))   # 2000-01-01
    assert "launch stack up to date" in h.setup()
    copy = tmp_path / "copy"
    shutil.copytree(stack, copy, copy_function=shutil.copy)   # new dates
    shutil.rmtree(stack)
    copy.rename(stack)
    out = h.setup()
    assert "launch stack up to date" in out and "colcon workspace up to date" in out
    assert len(h.calls("pip")) == wheel_installs
    # a changed file of composition_interfaces, same size and date: installed and built again
    srv = stack / "composition_interfaces" / "srv" / "LoadNode.srv"
    stat = srv.stat()
    srv.write_text(srv.read_text().replace("success", "succeed"))
    os.utime(srv, (stat.st_atime, stat.st_mtime))
    builds = len(h.calls("colcon"))
    out = h.setup()
    assert "installing the ROS 2 launch stack" in out
    assert len(h.calls("colcon")) == builds + 1


def test_a_moved_checkout_is_set_up_again_in_its_new_place(harness, tmp_path):
    h = harness
    h.setup()
    assert "up to date" in h.setup()
    moved = tmp_path / "elsewhere" / "fer_ros"
    moved.parent.mkdir()
    h.project.rename(moved)
    h.project = moved
    out = h.setup()
    assert "venv up to date" not in out and "colcon workspace up to date" not in out
    assert "making .venv again" in out
    assert h.calls("venv")[-1] == f"venv {moved}/.venv"
    assert (moved / ".venv" / "bin" / "pip").read_text().startswith(f"#!{moved}/.venv/bin/python")
    # build/ and install/ of the old place went; the new ones were made here
    assert (moved / "build" / "fer_msgs" / "CMakeCache.txt").read_text() == str(moved)
    assert f"-DPython3_EXECUTABLE={moved}/.venv/bin/python" in h.calls("colcon")[-1]
    out = h.setup()
    assert "venv up to date" in out and "colcon workspace up to date" in out


def test_another_interpreter_makes_the_venv_and_the_build_again(harness):
    h = harness
    h.setup()
    venvs, builds = len(h.calls("venv")), len(h.calls("colcon"))
    out = h.setup(FAKE_PY_EXE="/opt/other-python/bin/python3.12")
    assert "making .venv again" in out and "another Python" in out
    assert len(h.calls("venv")) == venvs + 1 and len(h.calls("colcon")) == builds + 1
    assert "up to date" in h.setup(FAKE_PY_EXE="/opt/other-python/bin/python3.12")


def test_an_unusable_python_is_refused_before_apt_installs_anything(harness):
    h = harness
    (h.project / "scripts" / "system_packages.sh").write_text("echo python3-venv\n")
    h.tool("apt-get", 'echo "apt-get $*" >> "$FAKE_LOG"')
    h.tool("sudo", 'exec "$@"')
    old = h.tool("old-python", "case $1 in --version) echo 'Python 3.10.12' ;; *) exit 1 ;; esac")
    for python, found in (("python3.99", "no python3.99 that runs"), (str(old), "Python 3.10.12")):
        out = h.setup(check=False, PYTHON=python)
        assert h.rc != 0 and not h.calls("apt-get"), out
        message = [line for line in out.splitlines() if line.strip()]
        assert len(message) == 1 and f"Python 3.11 to 3.14 is required (found {found})" in message[0], out


def test_caches_written_into_the_sources_need_no_build_but_added_and_removed_files_do(harness):
    h = harness
    module = h.project / "fer_ros" / "fer_ros" / "node.py"
    module.parent.mkdir()
    module.write_text("")
    h.setup()
    builds = len(h.calls("colcon"))

    def age_everything():
        for path in [*(h.project / "fer_ros").rglob("*"), *(h.project / "fer_msgs").rglob("*")]:
            os.utime(path, (946684800, 946684800))   # 2000-01-01
        os.utime(h.stamp("colcon"), (946684900, 946684900))

    # pytest and Python write their caches into the source folders: the folders' dates change, no package file does
    age_everything()
    for cache in ("fer_ros/fer_ros/__pycache__/node.cpython-312.pyc", "fer_ros/.pytest_cache/v/cache/nodeids",
                  "fer_ros/test/__pycache__/test_node.cpython-312-pytest-8.4.2.pyc"):
        (h.project / cache).parent.mkdir(parents=True, exist_ok=True)
        (h.project / cache).write_text("")
    assert "colcon workspace up to date" in h.setup()
    assert len(h.calls("colcon")) == builds
    # a file added with an old date, then the same file removed: each a build
    added = h.project / "fer_ros" / "fer_ros" / "extra.py"
    added.write_text("")
    age_everything()
    assert "colcon workspace up to date" not in h.setup()
    assert "colcon workspace up to date" in h.setup()
    age_everything()
    added.unlink()
    assert "colcon workspace up to date" not in h.setup()
    # an edited file
    age_everything()
    module.write_text("x = 1\n")
    assert "colcon workspace up to date" not in h.setup()
    assert len(h.calls("colcon")) == builds + 3


def test_what_pip_leaves_of_a_removed_launch_stack_goes_too(harness, tmp_path):
    h = harness
    stack = make_launch_stack(tmp_path / "shared" / "ros2-launch")
    h.env["FER_ROS_LAUNCH_STACK"] = str(stack)
    h.setup()
    site = h.project / ".venv" / "lib" / "python3.12" / "site-packages"
    installed = {"launch-3.4.3": ["launch/__init__.py", "launch/actions/__init__.py", "launch_entry.py",
                                  "__pycache__/launch_entry.cpython-312.pyc", "shared_ns/launch_part.py"],
                 "ros2cli-0.32.2": ["ros2cli/__init__.py"],
                 "other-1.0": ["other/__init__.py", "shared_ns/other_part.py"]}
    for dist, files in installed.items():
        for name in files:
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text("")
        (site / f"{dist}.dist-info").mkdir()
        (site / f"{dist}.dist-info" / "RECORD").write_text(
            "".join(f"{name},sha256=x,1\n" for name in [*files, "../../../bin/tool"]) + f"{dist}.dist-info/RECORD,,\n")
    # pytest's caches of the modules it rewrote, which no RECORD lists, and another module's cache
    for name in ("launch/__pycache__/__init__.cpython-312-pytest-8.4.2.pyc",
                 "launch/actions/__pycache__/__init__.cpython-312-pytest-8.4.2.pyc",
                 "ros2cli/__pycache__/__init__.cpython-312-pytest-8.4.2.pyc", "__pycache__/site.cpython-312.pyc"):
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("")
    shutil.rmtree(stack)
    out = h.setup()
    assert "removing the ROS 2 launch stack" in out
    assert [c for c in h.calls("pip") if "uninstall" in c] == ["pip uninstall -q -y launch ros2cli"]
    assert sorted(p.name for p in site.iterdir()) == ["__pycache__", "other", "other-1.0.dist-info", "shared_ns"]
    assert sorted(p.name for p in (site / "shared_ns").iterdir()) == ["other_part.py"]
