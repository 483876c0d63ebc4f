"""`make soak`: fer_node fed a real face for minutes with malformed messages mixed in: memory, rate, latency.

Starts fer_node as the latency probe does (its own process, a private ROS domain), publishes a 640x480 frame of
the astronaut's face at --rate-hz for --minutes, each frame stamped with its publish time, and replaces every
--bad-every-th frame by the next of the malformed messages of malformed.py (raw and compressed: bad sizes, short
data, unknown encodings, images declaring gigapixels, damaged JPEG and PNG). Reported, on the terminal and as
JSON: the node's resident memory at the start (its first answer), at --mark-minutes (which must come before
--minutes) and at the end, and its growth from the mark to the end (null, "not measured", when the run ended
before the mark); the /emotion rate; the latency from an image's stamp to its /emotion (median, p95); the frames
the node dropped and rejected (its /diagnostics); tracebacks and warnings in its output; its exit code after
SIGINT. A node that sends no /emotion answer while it is measured is a failure (exit code 1), not a report. A
benchmark, not a test: the figures depend on the machine and on what else runs on it. --json is checked before the
node starts.

Ctrl-C or SIGTERM stops the soak and the node: once the node has answered, the figures measured so far are
reported and written (marked "interrupted"), and the exit code is 130.

    make soak                                           # 10 minutes, JSON in soak_out/soak.json
    make soak MINUTES=30
    python -m fer_ros.ros.soak --minutes 2 --node-args "-p max_faces:=2"
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fer_ros.argtypes import HelpFormatter, number, out_problem, parse_args
from fer_ros.strict_json import write_json

RSS_PERIOD_S = 1.0       # how often the node's memory is read
PROGRESS_PERIOD_S = 30.0  # how often a progress line is printed
DEFAULT_MARK_MINUTES = 2.0  # the memory mark of a run long enough for it


def rss_mib(pid: int) -> float:
    """Resident memory (MiB) of process `pid`, from /proc; nan when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-soak", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--minutes", type=number(float, low=0.05, says="a number of minutes >= 0.05"), default=10.0,
                   help="how long to feed the node, after its first answer")
    p.add_argument("--mark-minutes", type=number(float, low=0.0, says="a number of minutes >= 0"), default=None,
                   help="memory growth is measured from this moment to the end (the start has caches filling); "
                        f"below --minutes (default: {DEFAULT_MARK_MINUTES:g}, or half of --minutes when that is "
                        "shorter)")
    p.add_argument("--rate-hz", type=number(float, low=0.1, high=1000.0, says="a rate in Hz"), default=30.0,
                   help="messages published per second (frames and malformed ones)")
    p.add_argument("--bad-every", type=number(int, low=2, says="an integer >= 2"), default=10,
                   help="every N-th message is a malformed one")
    from fer_ros.ros.latency_probe import ros_args_text
    p.add_argument("--node-args", type=ros_args_text, default="",
                   help="extra --ros-args for fer_node, e.g. '-p backend:=torch', split as a shell would (quote a "
                        "value with spaces: -p model_path:='my models/m'); default: none")
    p.add_argument("--startup-timeout-s", type=number(float, low=1.0, says="seconds >= 1"), default=180.0,
                   help="wait this long for fer_node's first answer")
    p.add_argument("--json", type=Path, default=Path("soak_out/soak.json"), help="JSON file to write")
    return p


def default_mark_minutes(minutes: float) -> float:
    """The memory mark of a run of `minutes` when none is given: DEFAULT_MARK_MINUTES, or half a shorter run."""
    return min(DEFAULT_MARK_MINUTES, minutes / 2.0)


def mark_problem(args) -> str | None:
    """Why --mark-minutes cannot be used with --minutes, or None: the mark must come before the end."""
    if args.mark_minutes < args.minutes:
        return None
    return (f"--mark-minutes {args.mark_minutes:g} must be below --minutes {args.minutes:g} (memory growth is "
            f"measured from the mark to the end): give a --mark-minutes below {args.minutes:g}, or 0 to measure from "
            "the first answer")


class MemoryReadings:
    """The node's memory (MiB, from `read()`) through a run: a reading at the start, one each RSS_PERIOD_S (`due`)
    and one at the end (`take`), as (s from the start, MiB) in `series`; `mark` is the first reading at or after
    `mark_s` (None until then)."""

    def __init__(self, read: Callable[[], float], mark_s: float):
        self.read, self.mark_s = read, mark_s
        self.series: list[tuple[float, float]] = []
        self.mark: float | None = None
        self.next_s = RSS_PERIOD_S
        self.take(0.0)

    def due(self, t: float) -> None:
        """A reading at `t` s from the start, when one is due."""
        if t >= self.next_s:
            self.take(t)
            self.next_s += RSS_PERIOD_S

    def take(self, t: float) -> None:
        """A reading at `t` s from the start."""
        self.series.append((round(t, 1), self.read()))
        if self.mark is None and t >= self.mark_s:
            self.mark = self.series[-1][1]


def memory_figures(series: list[tuple[float, float]], rss_mark: float | None, mark_minutes: float) -> dict:
    """The memory part of the report from the RSS readings `series` ((s, MiB), the first at the start, the last at
    the end) and the reading at the mark (None when the run ended before it: mark and growth are then null)."""
    start, end = series[0][1], series[-1][1]
    growth = None if rss_mark is None else round(100.0 * (end - rss_mark) / rss_mark, 2)
    return {"start": round(start, 1), "mark": None if rss_mark is None else round(rss_mark, 1), "end": round(end, 1),
            "mark_minutes": mark_minutes, "max": round(max(v for _, v in series), 1),
            "growth_after_mark_pct": growth}


def soak(args, node_proc, stop) -> dict:
    """Feed the started fer_node (`node_proc`, from latency_probe.start_node) and measure it; rclpy.init() must not
    have been called. `stop`: the StopSignals in force; a signal before the node's first answer raises
    KeyboardInterrupt, one after it ends the measurement early (the figures then say "interrupted"; with no answer
    measured yet, KeyboardInterrupt). RuntimeError when the node exits, or sends no /emotion answer while it is
    measured. Returns the figures (without the node's exit code and output, known only once it stops)."""
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image

    from fer_msgs.msg import FaceEmotionArray
    from fer_ros.image_codec import encode_rgb8
    from fer_ros.ros.latency_probe import face_frame, node_exit_message, wait_for_answer
    from fer_ros.ros.malformed import bad_images, to_message

    frame = face_frame(1)
    raw = encode_rgb8(frame, "bgr8")
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    bad = [(item, to_message(item)) for item in bad_images(jpg.tobytes())]
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("fer_soak")
    try:
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = node.create_publisher(Image, "image", reliable)
        compressed_pub = node.create_publisher(CompressedImage, "image/compressed", reliable)
        good = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                     step=raw.step)
        good.data = raw.data
        good.header.frame_id = "soak"
        latencies: list[float] = []
        faces: list[int] = []
        diagnostics: dict[str, str] = {}
        measuring = [False]

        def on_emotion(msg) -> None:
            if measuring[0]:
                stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                latencies.append((node.get_clock().now().nanoseconds - stamp_ns) * 1e-6)
                faces.append(len(msg.faces))

        def on_diagnostics(msg) -> None:
            for status in msg.status:
                diagnostics.update({kv.key: kv.value for kv in status.values})

        node.create_subscription(FaceEmotionArray, "/emotion", on_emotion, 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)

        def send_good() -> None:
            good.header.stamp = node.get_clock().now().to_msg()
            image_pub.publish(good)

        wait_for_answer(node, send_good, "/emotion", args.startup_timeout_s, node_proc, stop.requested)
        stop.starting = False  # from here on a signal ends the measurement, which reports what it has
        print(f"[soak] fer_node (pid {node_proc.pid}) answered: feeding it for {args.minutes:g} min", flush=True)
        measuring[0] = True
        start_diag = dict(diagnostics)
        pid = node_proc.pid
        duration_s, mark_s = 60.0 * args.minutes, 60.0 * args.mark_minutes
        memory = MemoryReadings(lambda: rss_mib(pid), mark_s)
        sent_good = sent_bad = 0
        period = 1.0 / args.rate_hz
        t0 = time.monotonic()
        next_progress = t0 + PROGRESS_PERIOD_S
        slot = 0
        while not stop.requested.is_set():
            now = time.monotonic()
            if now - t0 >= duration_s:
                break
            if slot % args.bad_every == args.bad_every - 1:
                item, msg = bad[sent_bad % len(bad)]
                msg.header.stamp = node.get_clock().now().to_msg()
                (compressed_pub if item.compressed_format is not None else image_pub).publish(msg)
                sent_bad += 1
            else:
                send_good()
                sent_good += 1
            slot += 1
            memory.due(now - t0)
            if now >= next_progress:
                print(f"[soak] {(now - t0) / 60:.1f} / {args.minutes:g} min: node {memory.series[-1][1]:.0f} MiB, "
                      f"{len(latencies) / (now - t0):.1f} /emotion per s, latency median "
                      f"{np.median(latencies) if latencies else float('nan'):.0f} ms", flush=True)
                next_progress += PROGRESS_PERIOD_S
            while True:  # wait for the next slot, answering callbacks meanwhile
                left = t0 + slot * period - time.monotonic()
                if left <= 0:
                    break
                rclpy.spin_once(node, timeout_sec=left)
            if node_proc.poll() is not None:
                raise RuntimeError(node_exit_message(node_proc))
        elapsed = time.monotonic() - t0
        interrupted = stop.requested.is_set()
        end = time.monotonic() + 2.0  # the answers to the last frames, and one more /diagnostics
        while time.monotonic() < end and not stop.requested.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)
        memory.take(elapsed)  # the end, and the mark where the run passed it after the last reading
        if not latencies:
            if interrupted:
                raise KeyboardInterrupt(f"after {elapsed:.1f} s, before any /emotion answer while measuring")
            raise RuntimeError(f"fer_node sent no /emotion answer to the {sent_good} frames sent in {elapsed:.1f} s "
                               "of measuring")
        lat = np.array(latencies)

        def node_count(key: str) -> int:
            return int(diagnostics.get(key, 0)) - int(start_diag.get(key, 0))
        return {
            "benchmark": "fer_ros soak", "minutes": args.minutes, "interrupted": interrupted,
            "rate_hz": args.rate_hz, "bad_every": args.bad_every, "node_args": args.node_args,
            "sent": {"frames": sent_good, "malformed": sent_bad, "malformed_kinds": len(bad)},
            "answered": len(latencies), "duration_s": round(elapsed, 1),
            "output_rate_hz": round(len(latencies) / elapsed, 2),
            "faces_per_answer": round(float(np.mean(faces)), 2),
            "latency_ms": {"median": round(float(np.median(lat)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                           "max": round(float(lat.max()), 1)},
            "node": {"received": node_count("frames_received"), "processed": node_count("frames_processed"),
                     "dropped": node_count("frames_dropped"), "rejected": node_count("frames_rejected")},
            "rss_mib": memory_figures(memory.series, memory.mark, args.mark_minutes),
            "rss_series_mib": memory.series,
        }
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def node_output_counts(log_path: str) -> dict:
    """Tracebacks, warnings and errors in fer_node's output."""
    text = Path(log_path).read_text(errors="replace")
    lines = text.splitlines()
    return {"tracebacks": text.count("Traceback"), "warnings": sum("[WARN]" in line for line in lines),
            "errors": sum("[ERROR]" in line for line in lines),
            "rejected_warnings": sum("rejected image" in line for line in lines)}


def format_memory(rss: dict) -> str:
    """The report's memory line; a growth that was not measured (the run ended before the mark) says so."""
    if rss["growth_after_mark_pct"] is None:
        return (f"  memory (RSS): start {rss['start']:.1f} MiB, end {rss['end']:.1f} MiB (max {rss['max']:.1f}): "
                f"growth after the {rss['mark_minutes']:g} min mark not measured (the run ended before it)")
    return (f"  memory (RSS): start {rss['start']:.1f} MiB, at {rss['mark_minutes']:g} min {rss['mark']:.1f} MiB, end "
            f"{rss['end']:.1f} MiB (max {rss['max']:.1f}): {rss['growth_after_mark_pct']:+.2f}% after the mark")


def format_report(r: dict) -> str:
    lat, n = r["latency_ms"], r["node"]
    return "\n".join([
        f"fer_node soak: {r['duration_s'] / 60:.1f} min at {r['rate_hz']:g} Hz, every {r['bad_every']}th message "
        f"malformed ({r['sent']['frames']} frames, {r['sent']['malformed']} malformed of {r['sent']['malformed_kinds']}"
        " kinds)",
        format_memory(r["rss_mib"]),
        f"  output: {r['output_rate_hz']:.2f} /emotion per s ({r['answered']} answers, "
        f"{r['faces_per_answer']:.2f} faces each); latency median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms, "
        f"max {lat['max']:.1f} ms",
        f"  node: {n['received']} received, {n['processed']} processed, {n['dropped']} dropped, "
        f"{n['rejected']} rejected",
        f"  node output: {r['tracebacks']} tracebacks, {r['rejected_warnings']} rejected-image warnings "
        f"({r['warnings']} warnings, {r['errors']} errors in all); exit code {r['exit_code']} after SIGINT",
    ])


def main(argv=None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-soak")
    if args is None:
        return 2
    if args.mark_minutes is None:
        args.mark_minutes = default_mark_minutes(args.minutes)
    problem = mark_problem(args)
    if problem:
        print(f"fer-soak: {problem}", file=sys.stderr)
        return 2
    why = out_problem(args.json)
    if why is not None:  # found before the run, which takes minutes, instead of after it
        print(f"fer-soak: --json {args.json}: {why}", file=sys.stderr)
        return 2
    from fer_ros.ros.latency_probe import start_node, stop_node
    from fer_ros.ros.spin import StopSignals
    with StopSignals() as stop:
        proc = start_node("image", "/emotion", "-p subscribe_compressed:=true " + args.node_args)
        report = None
        try:
            report = soak(args, proc, stop)
        except (TimeoutError, RuntimeError) as exc:
            failure, code = f"{exc}; fer_node output: {proc.log_path}", 1
        except KeyboardInterrupt as exc:
            failure, code = f"interrupted {str(exc) or 'before fer_node answered'}: nothing measured", 130
        finally:
            stop.starting = False  # from here on a signal only repeats the request
            stop_node(proc)
    if report is None:
        print(f"fer-soak: {failure}", file=sys.stderr)
        return code
    report["exit_code"] = proc.returncode
    report.update(node_output_counts(proc.log_path))
    report["node_log"] = proc.log_path
    print(format_report(report))
    write_json(args.json, report, indent=2)
    if report["interrupted"]:
        print(f"fer-soak: interrupted after {report['duration_s'] / 60:.1f} of {args.minutes:g} min; the figures so "
              f"far are in {args.json}", file=sys.stderr)
        return 130
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
