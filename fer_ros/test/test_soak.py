"""make soak's tool, run for a few seconds: it starts fer_node, mixes malformed messages into a real-face stream,
and reports memory, rate, latency, drops, rejections and the node's clean exit; interrupted, it stops the node and
says so in one line, and a growth after a mark it did not reach is not measured; a node that dies during it, or
stops answering, is a failure naming its output file; a mark that is not before the end is refused; the JSON is
strict. (The benchmark itself runs for minutes: `make soak`.)"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from node_model import model_for_tests  # noqa: E402
from ros_helpers import interrupt_tool, isolated_ros_env, start_python  # noqa: E402


def test_a_short_soak_reports_every_figure(tmp_path, tmp_path_factory):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-m", "fer_ros.ros.soak", "--minutes", "0.2", "--mark-minutes", "0.1",
                          "--bad-every", "4", "--node-args", f"-p model_path:={model.path}", "--json", str(out)],
                         env=isolated_ros_env({"OMP_NUM_THREADS": "2"}), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert "memory (RSS): start" in run.stdout and "after the mark" in run.stdout
    assert r["sent"]["malformed"] >= r["sent"]["malformed_kinds"]  # every kind sent at least once
    assert r["answered"] > 0 and r["output_rate_hz"] > 0 and r["faces_per_answer"] > 0.5
    assert 0 < r["latency_ms"]["median"] <= r["latency_ms"]["p95"]
    n = r["node"]
    assert 0 < n["rejected"] <= r["sent"]["malformed"]  # a malformed message replaced before its turn is a drop
    # Every message the node received was processed, dropped or rejected (give or take one in flight when the
    # counters were first read).
    assert abs(n["received"] - (n["processed"] + n["dropped"] + n["rejected"])) <= 2
    rss = r["rss_mib"]
    assert 100 < rss["start"] and rss["start"] <= rss["max"] and rss["end"] <= rss["max"]
    # The growth is worked out from the unrounded readings; each MiB figure is rounded to 0.1, which moves a
    # percentage recomputed from them by up to 100 * 0.1 / mark (plus the 0.01 of its own rounding).
    rounding = 100 * 0.1 / rss["mark"] + 0.01
    assert rss["growth_after_mark_pct"] == pytest.approx(100 * (rss["end"] - rss["mark"]) / rss["mark"],
                                                         abs=rounding)
    assert r["tracebacks"] == 0 and r["exit_code"] == 0
    assert 0 < r["rejected_warnings"] <= n["rejected"]


def test_bad_options_are_one_line_errors():
    run = subprocess.run([sys.executable, "-m", "fer_ros.ros.soak", "--minutes", "nan"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "--minutes" in run.stderr


@pytest.mark.parametrize("argv, mark, minutes", [(["--minutes", "0.15", "--mark-minutes", "2"], "2", "0.15"),
                                                 (["--minutes", "1", "--mark-minutes", "1"], "1", "1")])
def test_a_mark_not_before_the_end_is_refused_before_the_node_starts(monkeypatch, capsys, argv, mark, minutes):
    """Growth from a mark the run never reaches cannot be measured: one line that says what to give instead."""
    from fer_ros.ros import latency_probe, soak

    def start(*_):
        raise AssertionError("fer_node started")
    monkeypatch.setattr(latency_probe, "start_node", start)
    assert soak.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"fer-soak: --mark-minutes {mark} must be below --minutes {minutes} (memory growth is "
                           f"measured from the mark to the end): give a --mark-minutes below {minutes}, or 0 to "
                           "measure from the first answer"), err


def test_node_args_that_cannot_be_split_are_a_one_line_error(monkeypatch, capsys):
    """--node-args is split as a shell would (as the latency probe's): an unbalanced quote is refused before the
    node starts, in one line naming the option."""
    from fer_ros.ros import latency_probe, soak

    def start(*_):
        raise AssertionError("fer_node started")
    monkeypatch.setattr(latency_probe, "start_node", start)
    assert soak.main(["--minutes", "0.1", "--node-args", "-p model_path:='my models/m"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fer-soak: --node-args ") and "quot" in err, err


def test_a_json_that_cannot_be_written_is_refused_before_the_node_starts(unwritable_out, monkeypatch, capsys):
    """--json is checked before the run, which takes minutes, not after it: one line naming the option."""
    from fer_ros.ros import latency_probe, soak

    def start(*_):
        raise AssertionError("fer_node started")
    monkeypatch.setattr(latency_probe, "start_node", start)
    out, says = unwritable_out
    assert soak.main(["--minutes", "0.1", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"fer-soak: --json {out}: ") and says in err, err


def test_a_mark_in_the_last_second_is_the_reading_at_the_end():
    """Memory is read once a second and at the end: a mark after the last reading of the loop (2.7 s into a 3 s
    run, `--minutes 0.05 --mark-minutes 0.045`) is the end reading, not "not measured"; a run stopped before its
    mark leaves it unmeasured. A fake clock (the times given) and a fake memory source."""
    from fer_ros.ros import soak
    readings = iter([100.0, 101.0, 102.0, 103.0])
    memory = soak.MemoryReadings(lambda: next(readings), mark_s=60 * 0.045)
    for slot in range(90):  # 30 Hz for 3 s: readings at the start, at 1 s and at 2 s
        memory.due(slot / 30)
    assert memory.mark is None and memory.series == [(0.0, 100.0), (1.0, 101.0), (2.0, 102.0)]
    memory.take(3.0)  # the end
    assert memory.mark == 103.0 and memory.series[-1] == (3.0, 103.0)
    figures = soak.memory_figures(memory.series, memory.mark, 0.045)
    assert figures["mark"] == 103.0 and figures["growth_after_mark_pct"] == 0.0
    stopped = soak.MemoryReadings(lambda: 100.0, mark_s=2.7)
    stopped.due(1.0)
    stopped.take(1.5)  # stopped before the mark
    assert stopped.mark is None and len(stopped.series) == 3
    assert soak.MemoryReadings(lambda: 90.0, mark_s=0.0).mark == 90.0  # a mark at the start: the first reading


@pytest.mark.parametrize("sig, when", [(signal.SIGINT, "measuring"), (signal.SIGTERM, "starting")])
def test_an_interrupted_soak_stops_the_node_and_says_so(tmp_path, tmp_path_factory, sig, when):
    model = model_for_tests(tmp_path_factory.getbasetemp())
    out_json = tmp_path / "soak.json"
    proc = start_python(["-m", "fer_ros.ros.soak", "--minutes", "0.5", "--mark-minutes", "0.4",
                         "--startup-timeout-s", "120", "--node-args",
                         f"-p model_path:={model.path}", "--json", str(out_json)],
                        isolated_ros_env({"OMP_NUM_THREADS": "2"}))
    out, nodes, survivors = interrupt_tool(proc, sig, after="answered" if when == "measuring" else None)
    assert nodes, "the soak started no fer_node"
    if when == "measuring":
        assert f"fer_node (pid {nodes[0]}) answered" in out, out
    assert survivors == [], out  # the node did not outlive the soak
    assert proc.returncode == 130 and "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    if when == "measuring":
        assert last.startswith("fer-soak: interrupted after ") and str(out_json) in last, out
        r = json.loads(out_json.read_text())
        assert r["interrupted"] is True and 0 < r["duration_s"] < 24 and r["answered"] > 0
        assert r["rss_mib"]["mark"] is None and r["rss_mib"]["growth_after_mark_pct"] is None  # before the mark
        assert "growth after the 0.4 min mark not measured" in out, out
    else:
        assert last == "fer-soak: interrupted before fer_node answered: nothing measured", out
        assert not out_json.exists()


FAKE_NODE = """
import os, sys, time
import rclpy
from sensor_msgs.msg import Image
from fer_msgs.msg import FaceEmotionArray
rclpy.init(args=sys.argv)
node = rclpy.create_node("fake_fer_node")
pub = node.create_publisher(FaceEmotionArray, "emotion", 50)
first = []
last = [0.0]

def on_image(msg):
    now = time.monotonic()
    first[:] = first or [now]
    gap, last[0] = now - last[0], now
    if BEHAVIOUR == "dies" and now - first[0] > 1.0:
        print("fake node: giving up", flush=True)
        os._exit(3)
    if BEHAVIOUR == "stops answering" and gap < 0.15:  # answers the start's frames (0.2 s apart), not the soak's
        return
    pub.publish(FaceEmotionArray(header=msg.header))

node.create_subscription(Image, "image", on_image, 10)
while True:
    rclpy.spin_once(node, timeout_sec=0.01)
"""


def _fake_node(tmp_path, monkeypatch, behaviour: str) -> list:
    """latency_probe.start_node replaced by one that starts FAKE_NODE ("dies", "stops answering" or "answers"),
    output in tmp_path/fake_node.log; returns the list the started processes go into."""
    import random

    from fer_ros.ros import latency_probe
    script = tmp_path / "fake_node.py"
    script.write_text(f"BEHAVIOUR = {behaviour!r}\n" + FAKE_NODE)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    started = []

    def start(image_topic, emotion_topic, node_args=""):
        log_path = tmp_path / "fake_node.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=log,
                                    stderr=subprocess.STDOUT)
        proc.log_path = str(log_path)
        started.append(proc)
        return proc
    monkeypatch.setattr(latency_probe, "start_node", start)
    return started


def _kill(started: list) -> None:
    import os
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _soak(tmp_path, monkeypatch, behaviour: str, *argv: str) -> tuple[int, Path]:
    """fer-soak (soak.main with `argv`, the node's first answer awaited up to 60 s) against the fake node that
    `behaviour` names, stopped however the run ends; (exit code, the JSON file it was told to write)."""
    from fer_ros.ros import soak
    started = _fake_node(tmp_path, monkeypatch, behaviour)
    out_json = tmp_path / "soak.json"
    try:
        return soak.main([*argv, "--startup-timeout-s", "60", "--json", str(out_json)]), out_json
    finally:
        _kill(started)


def _strict(text: str):
    """JSON text parsed, refusing NaN and infinity (not JSON)."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_node_that_dies_during_the_soak_is_a_failure_naming_its_last_line(tmp_path, monkeypatch, capsys):
    """A node that answers, then exits with code 3 during the soak: fer-soak fails (exit code 1) with one line that
    names the exit code, the node's last line of output and its output file; nothing is written."""
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    rc, out_json = _soak(tmp_path, monkeypatch, "dies", "--minutes", "0.5", "--mark-minutes", "0")
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last == ("fer-soak: fer_node exited with code 3: fake node: giving up; fer_node output: "
                                f"{tmp_path / 'fake_node.log'}"), err
    assert not out_json.exists() and "Traceback" not in err


def test_a_node_that_stops_answering_is_a_failure_not_a_report(tmp_path, monkeypatch, capsys):
    """A node that answered at the start, then sends no /emotion while it is measured: fer-soak fails (exit code 1)
    with one line that names its output file; nothing is written."""
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    rc, out_json = _soak(tmp_path, monkeypatch, "stops answering", "--minutes", "0.05", "--mark-minutes", "0")
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith("fer-soak: fer_node sent no /emotion answer to the ") and last.endswith(
        f"s of measuring; fer_node output: {tmp_path / 'fake_node.log'}"), err
    assert not out_json.exists()


def test_figures_that_are_not_numbers_are_written_as_null(tmp_path, monkeypatch, capsys):
    """Memory that cannot be read (no /proc) is NaN: the JSON holds null there, never NaN, which is not JSON."""
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    from fer_ros.ros import soak
    monkeypatch.setattr(soak, "rss_mib", lambda pid: float("nan"))
    rc, out_json = _soak(tmp_path, monkeypatch, "answers", "--minutes", "0.05", "--mark-minutes", "0")
    assert rc == 0, capsys.readouterr().err
    r = _strict(out_json.read_text())
    assert r["answered"] > 0 and r["rss_mib"]["start"] is None and r["rss_mib"]["growth_after_mark_pct"] is None


def test_an_interruption_before_the_mark_leaves_the_growth_unmeasured(tmp_path, monkeypatch, capsys):
    """Stopped 1 s into a 30 s run with its mark at 12 s: the figures so far are written, and the growth after the
    mark is null and said to be not measured (not +0.00% at a mark never reached)."""
    pytest.importorskip("fer_msgs", reason="fer_msgs is not built (make setup)")
    import threading

    from fer_ros.ros import soak, spin
    stops, timers = [], []

    class Stop(spin.StopSignals):
        def __enter__(self):
            stops.append(self)
            return super().__enter__()
    read_rss = soak.rss_mib

    def rss_then_stop(pid):  # the first reading is the start of the measurement: stop 1 s later
        if not timers:
            timers.append(threading.Timer(1.0, lambda: stops[0].requested.set()))
            timers[0].start()
        return read_rss(pid)
    monkeypatch.setattr(spin, "StopSignals", Stop)
    monkeypatch.setattr(soak, "rss_mib", rss_then_stop)
    started = _fake_node(tmp_path, monkeypatch, "answers")
    out_json = tmp_path / "soak.json"
    try:
        rc = soak.main(["--minutes", "0.5", "--mark-minutes", "0.2", "--startup-timeout-s", "60", "--json",
                        str(out_json)])
    finally:
        for timer in timers:
            timer.cancel()
        _kill(started)
    out, err = capsys.readouterr()
    assert rc == 130, err
    rss = _strict(out_json.read_text())["rss_mib"]
    assert rss["mark"] is None and rss["growth_after_mark_pct"] is None and rss["start"] > 0
    assert "growth after the 0.2 min mark not measured (the run ended before it)" in out, out
    assert "% after the mark" not in out


@pytest.mark.parametrize("minutes, mark", [(10.0, 2.0), (4.0, 2.0), (1.0, 0.5), (0.15, 0.075)])
def test_the_default_mark_comes_before_the_end_of_any_run(minutes, mark):
    """`make soak MINUTES=1` measures growth from half way, not from a 2-minute mark it never reaches."""
    from fer_ros.ros import soak
    args = soak.get_args_parser().parse_args(["--minutes", str(minutes)])
    assert args.mark_minutes is None and soak.default_mark_minutes(minutes) == pytest.approx(mark)
    args.mark_minutes = soak.default_mark_minutes(minutes)
    assert soak.mark_problem(args) is None
