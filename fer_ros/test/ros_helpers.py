"""Helpers for tests that use rclpy across processes: an isolated ROS domain and subprocess handling."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys


def isolated_ros_env(extra: dict | None = None) -> dict:
    """A copy of os.environ with a ROS_DOMAIN_ID of its own (so concurrent test runs do not cross-talk),
    and localhost-only discovery."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 200))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def use_env(env: dict) -> None:
    """Make this (test) process join the same ROS domain as `env`. Call before rclpy.init()."""
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        os.environ[key] = env[key]


def start_python(code_or_args: list[str], env: dict) -> subprocess.Popen:
    """Start `python <args>` in a new process group (so it can be stopped with all its children)."""
    return subprocess.Popen([sys.executable, *code_or_args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 10.0) -> tuple[int, str]:
    """Send `sig` to the process group, wait, kill if needed; returns (returncode, output)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out or ""


def read_until(proc: subprocess.Popen, text: str, timeout_s: float) -> str:
    """The output of `proc` (started with stdout=PIPE) up to and including the first chunk that holds `text`; what
    it wrote until then when its output ends or `timeout_s` passes first."""
    import select
    import time
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout_s
    while text.encode() not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def interrupt_tool(proc: subprocess.Popen, sig: int, after: str | None) -> tuple[str, list[int], list[int]]:
    """Interrupt a tool that starts a fer_node of its own: wait (30 s at most) until `proc` has a child process,
    then (with `after`) until its output shows `after` and a second more, send `sig` to the tool alone (as a
    terminal's Ctrl-C or a service manager would) and let it end. Returns (all its output, the child pids, those of
    them still running after it ended); kills whatever is left either way."""
    import time
    nodes: list[int] = []
    head = ""
    try:
        deadline = time.monotonic() + 30
        while not nodes and proc.poll() is None and time.monotonic() < deadline:
            nodes = child_pids(proc.pid)
            time.sleep(0.05)
        if nodes and after is not None:
            head = read_until(proc, after, 120)
            time.sleep(1.0)
        if nodes:
            os.kill(proc.pid, sig)
        rest, _ = proc.communicate(timeout=40)
        survivors = [pid for pid in nodes if running(pid)]
    finally:
        if proc.poll() is None:
            stop(proc)
        for pid in nodes:
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
    return head + rest, nodes, survivors
