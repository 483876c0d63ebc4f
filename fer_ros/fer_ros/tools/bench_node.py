"""fer-bench's node part: fer_node in its own process fed a camera rate by the latency probe
(ros/latency_probe.py), one probe run per face count, its /emotion rate and image-stamp-to-/emotion latency
(`bench_node`, `format_node`). A probe that runs past its time, or is running at Ctrl-C, is stopped with its node
(`run_probe`, `stop_probe`)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from fer_ros.processes import kill_group_in_pid_file, stop_process

NODE_FACES = (1, 3)
PROBE_STOP_WAIT_S = 15.0  # how long a stopped latency probe gets to stop its fer_node (it gives the node 10 s)
PROBE_SLACK_S = 300.0  # how long a latency probe may run beyond its measuring time (the node's start included)


def bench_node(model_dir: Path, threads: int, duration_s: float, rate_hz: float = 30.0,
               faces: tuple[int, ...] = NODE_FACES, landmark_threads: int = 0) -> dict:
    """fer_node's /emotion rate and image-stamp-to-/emotion latency at `rate_hz`, one probe run (its own node
    process) per face count, run by run_probe: a case is {"error": why} where the probe failed (its node exited or
    did not answer) or ran more than PROBE_SLACK_S past `duration_s`. {"skipped": why} where ROS 2 or fer_msgs
    cannot be imported."""
    import importlib.util
    import tempfile
    missing = [m for m in ("rclpy", "fer_msgs") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"{', '.join(missing)} not importable: source ROS 2 and the workspace (make setup)"}
    out: dict = {"rate_hz": rate_hz, "model_dir": str(model_dir), "cases": {}}
    for n in faces:
        with tempfile.TemporaryDirectory() as tmp:
            result, node_pid = Path(tmp) / "probe.json", Path(tmp) / "node.pid"
            cmd = [sys.executable, "-m", "fer_ros.ros.latency_probe", "--start-node", "--faces", str(n),
                   "--rate-hz", str(rate_hz), "--duration-s", str(duration_s), "--json", str(result),
                   "--node-pid-file", str(node_pid),
                   "--node-args", shlex.join(["-p", f"model_path:={model_dir}", "-p", f"num_threads:={threads}",
                                              "-p", f"max_faces:={max(5, n)}",
                                              "-p", f"landmark_threads:={landmark_threads}"])]
            name = f"{n}_face" + ("s" if n != 1 else "")
            out["cases"][name] = run_probe(cmd, result, duration_s + PROBE_SLACK_S, node_pid)
    return out


def run_probe(cmd: list[str], result: Path, timeout_s: float, node_pid: Path | None = None) -> dict:
    """Run the latency probe command `cmd`, which writes its result to `result`, in a session of its own (a
    terminal's Ctrl-C reaches it through this process alone): its result, or {"error": why} where it failed or
    ran past `timeout_s`. A probe that runs too long, or is running at a KeyboardInterrupt (raised again
    afterwards), is stopped by stop_probe. `node_pid`: the file `cmd` names as the probe's --node-pid-file; a node
    it still names once the probe has ended (the probe was killed) is killed."""
    import tempfile
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True,
                                env=dict(os.environ, TQDM_DISABLE="1"))
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_probe(proc, node_pid)
            why = f"latency probe still running after {timeout_s:.0f} s: stopped"
        except BaseException:
            stop_probe(proc, node_pid)
            raise
        else:
            why = None
            if node_pid is not None:
                kill_group_in_pid_file(node_pid)
        err.seek(0)
        lines = err.read().strip().splitlines()
    if why is not None:
        said = [line for line in lines if line.startswith("fer_node output: ") or "; fer_node output: " in line]
        return {"error": why + (f" ({said[-1]})" if said else "")}
    if proc.returncode != 0 or not result.is_file():
        return {"error": f"latency probe exited with {proc.returncode}: {(lines or [''])[-1]}"}
    return json.loads(result.read_text())


def stop_probe(proc: subprocess.Popen, node_pid: Path | None = None) -> None:
    """Stop a latency probe as Ctrl-C would (SIGINT: it stops its fer_node) and wait for it; SIGKILL to its process
    group after PROBE_STOP_WAIT_S, then to the process group of the node named in `node_pid` (the probe's
    --node-pid-file, which the probe removes once its node has stopped), which runs in a session of its own. A
    KeyboardInterrupt meanwhile does not cut the wait short: the probe is stopping its node already."""
    if proc.poll() is None:
        print("fer-bench: stopping the latency probe and its fer_node", file=sys.stderr)
        stop_process(proc, PROBE_STOP_WAIT_S)
    if node_pid is not None:
        kill_group_in_pid_file(node_pid)


def format_node(node: dict) -> str:
    """The lines of a bench_node result."""
    if "skipped" in node:
        return f"fer_node at 30 Hz: not run: {node['skipped']}"
    lines = [f"fer_node fed {node['rate_hz']:.0f} Hz, image stamp -> /emotion:"]
    for name, c in node["cases"].items():
        if "error" in c:
            lines.append(f"  {name:<8} {c['error']}")
        else:
            lines.append(f"  {name:<8} latency {c['latency_ms_median']:6.1f} ms median, "
                         f"{c['latency_ms_p95']:6.1f} ms p95; /emotion {c['emotion_rate_hz']:5.1f} Hz")
    return "\n".join(lines)
