"""Stopping child processes as Ctrl-C would, and the pid file through which a process names a child it started in a
session of its own (fer-bench's latency probe names its fer_node), so that whoever stops the first can stop the
second too when the first could not."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def stop_process(proc: subprocess.Popen, grace_s: float, group: bool = True) -> bool:
    """Stop `proc` as Ctrl-C would: SIGINT (to its process group with `group`, which needs it to lead one:
    start_new_session=True), wait up to `grace_s` for it to end, then SIGKILL (to its group with `group`) and wait
    for it. A KeyboardInterrupt meanwhile does not cut the wait short (the process is stopping already). Returns
    whether it had to be killed; a process that has ended already is left as it is (False)."""
    if proc.poll() is not None:
        return False
    _signal(proc, signal.SIGINT, group)
    deadline = time.monotonic() + grace_s
    while True:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            return False
        except subprocess.TimeoutExpired:
            break
        except KeyboardInterrupt:
            continue
    _signal(proc, signal.SIGKILL, group)
    while True:
        try:
            proc.wait()
            return True
        except KeyboardInterrupt:
            continue


def write_pid_file(path: Path, pid: int) -> None:
    """Write `pid` to `path` whole (through a temporary file beside it, renamed): a reader never sees half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def kill_group_in_pid_file(path: Path) -> bool:
    """SIGKILL to the process group led by the pid in `path` (written by write_pid_file; the process that wrote it
    removes it once that child has ended, so a file still there names a child that may still run), then remove the
    file. Returns whether a group was signalled; a missing or unreadable file, or a group that has ended, is
    nothing to do (False)."""
    path = Path(path)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid <= 1:  # 0 would be this process's own group
        path.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
        killed = True
    except (ProcessLookupError, PermissionError):
        killed = False
    path.unlink(missing_ok=True)
    return killed
