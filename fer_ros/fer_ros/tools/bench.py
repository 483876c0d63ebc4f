"""`make bench` / `fer-bench`: how fast fer_ros runs on this machine, as a table and a JSON file.

1. perception: per-stage timings (median, p95) of the Recognizer on a 640x480 frame with 1, 3 and 5 real faces
   (bench_perception);
2. networks: per-backend latency of the 3DAGN model (both networks, one call) at batch 1, 2, 4, 8 faces, beside
   the theoretical floor (the model's FLOPs over this machine's measured fp32 matrix-multiply rate) and the
   ratio to it; a model with an int8 graph is measured on onnxruntime's CPU backend in int8 and in fp32 (int8
   arithmetic can run under the fp32 floor); torch on a GPU with its CUDA graphs and eagerly, judged against
   GPU_TARGET_MS at GPU_TARGET_BATCH faces (the CPU floor says nothing about a GPU);
3. pipeline: the full pipeline (landmarks + crops + LBP + both networks) with 1, 3 and 5 faces: per-frame time
   one stage after the other (Recognizer.process), and the frame rate with the two stages overlapped on two
   threads as fer_node runs them (perceive of frame t+1 beside recognise of frame t): one over the median time
   between successive frames done (a slow spell of a few frames does not move it), beside the mean rate, with the
   targets (60, 30 and 15 fps on a 2-core CPU) judged on the median one;
4. node: fer_node in its own process fed 30 Hz (ros/latency_probe.py) with 1 and 3 faces: the /emotion rate and
   the latency from an image's stamp to its /emotion (median, p95); left out where ROS 2 is not importable or
   with --no-node (bench_node.py). A node that exits or does not answer is that case's error; Ctrl-C stops the
   probe and its node (SIGINT, SIGKILL only after PROBE_STOP_WAIT_S, to the probe and then to the node it names in
   its pid file) and ends fer-bench with exit code 130, writing nothing.

The fp32 matrix-multiply rate is measured before and after each part, with the share of the CPU time it could use
that this process got meanwhile. On a shared or throttled machine the rate moves during the run, and every timing
with it; a load that lasts the whole run leaves the rate steady but takes cores from the benchmark, which the share
shows. The report gives both and says the run is not steady when the rates spread by more than STEADY_SPREAD or a
share is below STEADY_CPU_SHARE, so a reader knows the run needs repeating on a quiet machine. The floor uses the
highest rate of all these samples. The JSON is strict: a figure that is not finite is null.

A model need not hold every file: backends it cannot serve (onnxruntime and TensorRT without its ONNX graph, torch
without its state dict) are listed as not run, with the reason. --out is checked before anything runs.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fer_ros.argtypes import HelpFormatter, number, out_problem, parse_args
from fer_ros.runtime import SETTING_HELP, SETTING_RANGES, add_setting_option
from fer_ros.slots import Handoff
from fer_ros.tools.bench_node import NODE_FACES, bench_node, format_node
from fer_ros.tools.bench_perception import (bench_perception, format_perception, machine_info, matmul_rate,
                                           time_interleaved_ms)

BATCHES = (1, 2, 4, 8)
TARGET_FPS = {"1_face": 60.0, "3_faces": 30.0, "5_faces": 15.0}
GPU_TARGET_BATCH, GPU_TARGET_MS = 8, 1.0  # both networks for 8 faces on a GPU, median
STEADY_SPREAD = 0.10  # (highest - lowest) / highest matmul rate over the run, above which its timings are unsteady
STEADY_CPU_SHARE = 0.85  # the least share of its cores the benchmark may get during a matmul sample and be steady



def model_flops(model_dir: Path) -> int:
    """Floating-point operations (multiply-add = 2) of one face through both networks, counted by torch on the
    network its manifest's arch and arch_cfg build: the weights do not change the count, so a model without its
    state dict (ONNX only) is counted too. ModelError where the arch builds no network."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fer_ros.export import build_network, example_inputs
    from fer_ros.manifest import load_manifest
    from fer_ros.nets.agn import ProbsOnly
    manifest = load_manifest(model_dir)
    model = build_network(manifest).eval()
    inputs = example_inputs(manifest, batch=1)
    inputs[2][:] = 1.0  # a neutral reference: the geometric network's work counts
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ProbsOnly(model)(*inputs)
    return int(counter.get_total_flops())


def bench_networks(model_dir: Path, backends: list[tuple[str, str]], repeats: int, threads: int,
                   progress: bool = True) -> dict:
    from tqdm import tqdm

    from fer_ros.engine import BackendUnavailable, load_engine
    from fer_ros.manifest import ModelError, load_manifest
    from fer_ros.quantize import INT8_ROLE
    out: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    rng = np.random.default_rng(0)
    # beside how each backend runs by default: onnxruntime on the CPU in fp32 where the model has an int8 graph
    # (int8 arithmetic can run under the fp32 floor), torch on a GPU eagerly beside its CUDA graphs
    has_int8 = INT8_ROLE in load_manifest(model_dir).files
    cases = []
    for backend, device in dict.fromkeys(backends):  # a backend:device named twice is one case
        cases.append((backend, device, {}, ""))
        if backend == "onnxruntime" and device == "cpu" and has_int8:
            cases.append((backend, device, {"int8": False}, " fp32"))
        if backend == "torch" and device.startswith("cuda"):
            cases.append((backend, device, {"cuda_graphs": False}, " eager"))
    bar = tqdm(total=len(cases) * len(BATCHES), desc="network bench", unit="case", disable=not progress)
    for backend, device, options, suffix in cases:
        key = f"{backend}:{device}{suffix}"
        try:
            engine = load_engine(model_dir, backend=backend, device=device, num_threads=threads,
                                 fp16=backend == "tensorrt", **options)
        except (BackendUnavailable, ModelError) as exc:  # not usable here, or a model file it needs is missing
            skipped[key] = str(exc)
            bar.update(len(BATCHES))
            continue
        # the label names the backend, device and precision; eager torch on a GPU is the same label as its graphs,
        # so it says so
        label = engine.label + (" eager" if options.get("cuda_graphs") is False else "")
        if label in out:  # two cases that run the same (auto:cpu and onnxruntime:cpu): timed once
            skipped[key] = f"runs as {label}, timed already"
            engine.close()
            bar.update(len(BATCHES))
            continue
        shapes = engine.input_shapes()
        calls = {}
        for b in BATCHES:
            inputs = (rng.random((b, *shapes["clip"]), np.float32),
                      rng.uniform(-1, 1, (b, *shapes["geo"])).astype(np.float32), np.ones(b, np.float32))
            calls[str(b)] = lambda inputs=inputs: engine.predict(*inputs)
            for _ in range(5):
                calls[str(b)]()
        per_batch = time_interleaved_ms(calls, repeats)
        bar.update(len(BATCHES))
        out[label] = {"batch_ms": per_batch, "notes": engine.notes, "device": engine.device}
        engine.close()
    bar.close()
    return {"backends": out, "skipped": skipped}


def bench_pipeline(model_dir: Path, threads: int, repeats: int, warmup: int, progress: bool = True,
                   landmark_threads: int = 0) -> dict:
    """The full pipeline's frame rate with the engine the node would load (backend and device auto)."""
    from fer_ros.runtime import RecognizerSettings, open_engine
    engine, _ = open_engine(RecognizerSettings(model_path=str(model_dir), num_threads=threads))
    res = bench_perception(repeats=repeats, warmup=warmup, engine=engine, progress=progress,
                           landmark_threads=landmark_threads)
    cases = {}
    for name, case in res["cases"].items():
        total = case["stages_ms"]["total"]
        fps = 1e3 / total["median"] if total["median"] > 0 else float("inf")
        intervals = two_stage_intervals(engine, case["faces_in_frame"], repeats, warmup, landmark_threads)
        two, span = rate_of_median(intervals), sum(intervals)
        two_mean = len(intervals) / span if span > 0 else float("inf")
        cases[name] = {"total_ms": total, "fps_median": fps, "fps_at_p95": 1e3 / total["p95"],
                       "fps_two_stages": two, "fps_two_stages_mean": two_mean, "target_fps": TARGET_FPS.get(name),
                       "target_met": two >= TARGET_FPS.get(name, 0.0),
                       "stages_ms": case["stages_ms"], "faces_found_median": case["faces_found_median"]}
    return {"backend": engine.label, "crop_size": res["crop_size"], "cases": cases}


def rate_of_median(intervals_s: list[float]) -> float:
    """One over the median of `intervals_s` (s): a rate in Hz that a few slow intervals do not move; infinite for a
    median of 0."""
    median = float(np.median(intervals_s))
    return 1.0 / median if median > 0 else float("inf")


def two_stage_intervals(engine, faces: int, frames: int, warmup: int, landmark_threads: int = 0, fps: float = 30.0
                        ) -> list[float]:
    """The pipeline with its two stages on two threads, as fer_node runs them: one thread perceives (landmarks)
    the frames of a `faces`-face stream in order, each once the last one was taken, and hands it over
    (slots.Handoff); this thread recognises them. Returns the `frames` - 1 times (s) between the ends of successive
    recognitions of `frames` frames (at least 2) after `warmup`."""
    if frames < 2:
        raise ValueError(f"two_stage_intervals needs at least 2 frames, got {frames}")
    from fer_ros.landmarker import MediaPipeLandmarker
    from fer_ros.pipeline import Recognizer
    from fer_ros.tools.bench_perception import astronaut_face_frame
    frame = astronaut_face_frame(faces)
    handoff = Handoff()
    rec = Recognizer(engine=engine, max_faces=max(5, faces),
                     landmarker=MediaPipeLandmarker(mode="video", max_faces=max(5, faces), threads=landmark_threads))

    def perceive_all() -> None:
        try:
            for i in range(warmup, warmup + frames):  # the stream goes on after the warm-up
                while not handoff.wait_empty(1.0):
                    pass
                handoff.put(rec.perceive(frame, i / fps))
        except BaseException as exc:  # raised again by the recognising thread
            handoff.wait_empty(60.0)
            handoff.put(exc)
    try:
        for i in range(warmup):
            rec.recognise(rec.perceive(frame, i / fps))
        worker = threading.Thread(target=perceive_all, name="bench_perceive", daemon=True)
        done = []  # when each recognition ended: the first one's start (the thread's) is not counted
        worker.start()
        for i in range(frames):
            perception = None
            while perception is None:
                perception = handoff.take(1.0)
            if isinstance(perception, BaseException):
                raise RuntimeError(f"perceive failed: {perception!r}")
            rec.recognise(perception)
            done.append(time.perf_counter())
        worker.join()
    finally:
        rec.close()
    return [float(t) for t in np.diff(done)]


def judge_networks(networks: dict, floor_ms: float | None) -> None:
    """Add to each backend of a bench_networks result its floor_ratio (CPU: median over `floor_ms` times the faces;
    none where `floor_ms` is None, the model's FLOPs not counted) or its target (GPU: median at GPU_TARGET_BATCH
    faces within GPU_TARGET_MS; the CPU floor says nothing there)."""
    for b in networks["backends"].values():
        if b["device"] == "cpu":
            if floor_ms is None:
                continue
            b["floor_ratio"] = {k: s["median"] / (floor_ms * int(k)) for k, s in b["batch_ms"].items()}
        else:
            median = b["batch_ms"][str(GPU_TARGET_BATCH)]["median"]
            b["target"] = {"batch": GPU_TARGET_BATCH, "median_ms_at_most": GPU_TARGET_MS,
                           "met": median <= GPU_TARGET_MS}


def steadiness(rates_gflops: list[float], cpu_shares: list[float]) -> dict:
    """How steady the machine was over the run, from its matmul samples (matmul_rate): the rates, their spread
    ((highest - lowest) / highest), the CPU share the benchmark got in each and the lowest; steady when the spread
    is within STEADY_SPREAD and no share is below STEADY_CPU_SHARE (a load that lasts the whole run moves no rate
    but takes cores)."""
    high, low = max(rates_gflops), min(rates_gflops)
    spread = (high - low) / high if high > 0 else 0.0
    least = min(cpu_shares)
    why = []  # judged on the figures before they are rounded for the report
    if spread > STEADY_SPREAD:
        why.append(f"spread over {100 * STEADY_SPREAD:.0f}%")
    if least < STEADY_CPU_SHARE:
        why.append(f"CPU share under {100 * STEADY_CPU_SHARE:.0f}%")
    return {"matmul_gflops": [round(r, 1) for r in rates_gflops], "spread": round(spread, 3),
            "cpu_share": [round(c, 3) for c in cpu_shares], "cpu_share_min": round(least, 3),
            "steady": not why, "not_steady_because": why}


def format_steadiness(s: dict) -> str:
    rates = s["matmul_gflops"]
    text = (f"machine speed over the run: fp32 matmul {min(rates):.0f}-{max(rates):.0f} GFLOP/s in {len(rates)} "
            f"measurements (spread {100 * s['spread']:.0f}%), the benchmark getting at least "
            f"{100 * s['cpu_share_min']:.0f}% of its cores' time")
    if s["steady"]:
        return text + ": steady"
    return (text + f": NOT steady ({', '.join(s['not_steady_because'])}); something else is using this machine's CPU, so these timings "
            "are too; run fer-bench again when it is idle")


def default_backends(manifest=None) -> list[tuple[str, str]]:
    """Every backend:device usable here; with `manifest`, those its model's files can serve (onnxruntime and
    TensorRT run its ONNX graph, torch its state dict)."""
    from fer_ros.engine import hardware
    out = [("onnxruntime", "cpu"), ("torch", "cpu")]
    if hardware.torch_cuda_devices():
        out += [("torch", "cuda")]
        if "CUDAExecutionProvider" in hardware.ort_providers():
            out += [("onnxruntime", "cuda")]
    from fer_ros.engine import tensorrt_backend
    if tensorrt_backend.available()[0]:
        out += [("tensorrt", "cuda")]
    if manifest is not None:
        role = {"onnxruntime": "onnx", "tensorrt": "onnx", "torch": "state_dict"}
        out = [(backend, device) for backend, device in out if role[backend] in manifest.files]
    return out


def format_report(r: dict) -> str:
    lines = [format_perception(r["perception"]), "", *format_networks(r)]
    p = r["pipeline"]
    lines.append("")
    lines.append(f"full pipeline ({p['backend']}, crop {p['crop_size']} px), 640x480:")
    for name, c in p["cases"].items():
        lines.append(f"  {name:<8} {c['total_ms']['median']:6.1f} ms median, {c['total_ms']['p95']:6.1f} ms p95 -> "
                     f"{c['fps_median']:5.1f} fps (p95 {c['fps_at_p95']:.1f}); two stages overlapped "
                     f"{c['fps_two_stages']:5.1f} fps at the median interval (mean {c['fps_two_stages_mean']:.1f}); "
                     f"target {c['target_fps']:.0f} fps: "
                     f"{'met' if c['target_met'] else 'NOT met'}")
    if r.get("node") is not None:
        lines += ["", format_node(r["node"])]
    if r.get("steadiness") is not None:
        lines += ["", format_steadiness(r["steadiness"])]
    return "\n".join(lines)


def format_networks(r: dict) -> list[str]:
    """The lines of the networks section of a report (its model, floor, threads and networks)."""
    f = r["floor"]
    if f["floor_ms_per_face"] is None:
        model = (f"  model: FLOPs not counted ({f.get('not_counted_because', 'unknown')}); fp32 matmul "
                 f"{f['matmul_gflops']:.1f} GFLOP/s on {r['threads']} thread(s) -> no floor")
    else:
        model = (f"  model: {f['mflops_per_face']:.1f} MFLOP per face; fp32 matmul {f['matmul_gflops']:.1f} GFLOP/s "
                 f"on {r['threads']} thread(s) -> floor {f['floor_ms_per_face']:.3f} ms per face")
    lines = [f"networks ({r['model']}), ms per call: median / p95", model,
             "  " + f"{'backend':<26}" + "".join(f"{'batch ' + str(b):>24}" for b in BATCHES)]
    for name, b in r["networks"]["backends"].items():
        ratio = b.get("floor_ratio", {})
        cells = "".join(f"{s['median']:9.2f} /{s['p95']:7.2f} " + (f"({ratio[k]:.1f}x)" if k in ratio else " " * 6)
                        for k, s in b["batch_ms"].items())
        target = b.get("target")
        if target is not None:
            cells += (f"  target <= {target['median_ms_at_most']:g} ms at batch {target['batch']}: "
                      f"{'met' if target['met'] else 'NOT met'}")
        lines.append(f"  {name:<26}{cells}")
    lines.append("  (Nx: the median over the CPU floor for that many faces)")
    for name, why in r["networks"]["skipped"].items():
        lines.append(f"  {name:<26} not run: {why}")
    return lines


def backend_list(text: str) -> list[tuple[str, str]]:
    """An argparse type: "onnxruntime:cpu,torch:cuda" -> [("onnxruntime", "cpu"), ("torch", "cuda")] (a backend
    without a device runs on the CPU); an unknown backend or device raises ArgumentTypeError naming the known
    ones."""
    from fer_ros.engine import BACKENDS
    from fer_ros.engine.hardware import parse_device
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        backend, _, device = item.partition(":")
        backend, device = backend.strip().lower(), device.strip().lower() or "cpu"
        if backend not in BACKENDS:
            raise argparse.ArgumentTypeError(f"names an unknown backend {backend!r} in {item.strip()!r}; "
                                             f"use backend:device with a backend of {', '.join(BACKENDS)}")
        try:
            parse_device(device)
        except ValueError:
            raise argparse.ArgumentTypeError(f"names an unknown device {device!r} in {item.strip()!r}; "
                                             "use backend:device with a device of cpu, cuda or cuda:N") from None
        out.append((backend, device))
    if not out:
        raise argparse.ArgumentTypeError(f"must name at least one backend:device, got {text!r}")
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-bench", description=__doc__.split("\n\n")[0] + " Writes JSON to --out.",
                                formatter_class=HelpFormatter)
    add_setting_option(p, "model_path", "--model")
    p.add_argument("--out", type=Path, default=Path("bench_out/bench.json"), help="JSON file to write")
    top = SETTING_RANGES["num_threads"][1]  # fer_node's range; 0 (the backend's choice) would time an unknown count
    add_setting_option(p, "num_threads", "--threads", type=number(int, low=1, high=top, says=f"1 to {top}"),
                       help=SETTING_HELP["num_threads"] + ", as fer_node's num_threads parameter")
    low, top = SETTING_RANGES["landmark_threads"]
    add_setting_option(p, "landmark_threads", type=number(int, low=low, high=top, says=f"{low} to {top}"),
                       help=SETTING_HELP["landmark_threads"] + ", as fer_node's landmark_threads parameter")
    p.add_argument("--repeats", type=number(int, low=2, says=">= 2"), default=60,
                   help="timed runs per case (the network cases: in rounds that visit each batch size in turn; the "
                        "overlapped pipeline: frames, whose intervals give its rate)")
    p.add_argument("--warmup", type=number(int, low=0, says=">= 0"), default=10,
                   help="untimed frames before each pipeline case")
    p.add_argument("--backends", type=backend_list, default=None,
                   help="comma-separated backend:device list, e.g. onnxruntime:cpu,torch:cuda; default: every "
                        "backend usable here")
    p.add_argument("--node-seconds", type=number(float, low=1.0, finite=True, says="seconds >= 1"), default=15.0,
                   help="how long fer_node is fed 30 Hz per face count")
    p.add_argument("--no-node", action="store_true", help="leave out the fer_node latency runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = parse_args(get_args_parser(), argv, "fer-bench")
    if args is None:
        return 2
    from fer_ros.manifest import ModelError, load_manifest
    from fer_ros.runtime import SetupError, resolve_model_dir
    try:
        manifest = load_manifest(resolve_model_dir(args.model))
    except (SetupError, ModelError) as exc:
        print(f"fer-bench: {exc}", file=sys.stderr)
        return 2
    why = out_problem(args.out)
    if why is not None:  # found before the run, which takes minutes, instead of after it
        print(f"fer-bench: --out {args.out}: {why}", file=sys.stderr)
        return 2
    try:
        report = run(args, manifest)
    except KeyboardInterrupt:
        print("fer-bench: interrupted: nothing written", file=sys.stderr)
        return 130
    print(format_report(report))
    from fer_ros.strict_json import write_json
    write_json(args.out, report, indent=2)
    print(f"written {args.out}")
    return 0


def run(args, manifest) -> dict:
    """Every part of the benchmark, as main's `args` ask, on the model of `manifest`: the report."""
    from fer_ros.manifest import ModelError
    backends = args.backends or default_backends(manifest)
    progress = not args.no_progress
    samples = [matmul_rate(args.threads)]
    perception = bench_perception(repeats=args.repeats, warmup=args.warmup, progress=progress,
                                  landmark_threads=args.landmark_threads)
    try:
        flops, not_counted = model_flops(manifest.directory), None
    except ModelError as exc:
        flops, not_counted = None, str(exc)
    samples.append(matmul_rate(args.threads))
    networks = bench_networks(manifest.directory, backends, args.repeats, args.threads, progress)
    samples.append(matmul_rate(args.threads))
    pipeline = bench_pipeline(manifest.directory, args.threads, args.repeats, args.warmup, progress,
                              args.landmark_threads)
    samples.append(matmul_rate(args.threads))
    node = None if args.no_node else bench_node(manifest.directory, args.threads, args.node_seconds,
                                                landmark_threads=args.landmark_threads)
    if node is not None:
        samples.append(matmul_rate(args.threads))
    rate = max(s["gflops"] for s in samples)  # every sample of the run, as steadiness reports them
    floor_ms = None if flops is None else flops / (rate * 1e9) * 1e3
    judge_networks(networks, floor_ms)
    floor = {"mflops_per_face": None if flops is None else flops / 1e6, "matmul_gflops": rate,
             "floor_ms_per_face": floor_ms,
             "what": "model FLOPs at batch 1 / the highest fp32 matmul rate measured in the run: the least time "
                     "fp32 arithmetic can take on this CPU (int8 arithmetic can run under it)"}
    if not_counted is not None:
        floor["not_counted_because"] = not_counted
    return {
        "benchmark": "fer_ros", "model": manifest.name, "model_dir": str(manifest.directory), "threads": args.threads,
        "landmark_threads": args.landmark_threads,
        "machine": machine_info(), "perception": perception,
        "floor": floor,
        "networks": networks, "pipeline": pipeline, "node": node,
        "steadiness": steadiness([s["gflops"] for s in samples], [s["cpu_share"] for s in samples]),
    }


if __name__ == "__main__":
    sys.exit(main())
