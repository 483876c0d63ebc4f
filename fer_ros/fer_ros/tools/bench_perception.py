"""Perception benchmark: per-stage timings of the Recognizer on a 640x480 frame with 1, 3 and 5 real faces
(scikit-image's astronaut), plus the small kernels (crop, LBP, difference image) on their own.

The landmark stage is set against its floor: the face mesh network, the part every face costs whatever is done
around it, timed alone on one face (`mesh_ms`: the network through LiteRT, as the landmarker follows a known face,
or MediaPipe's FaceLandmarker following it where LiteRT is not installed), times the faces, shared over the cores the
landmarker can use at once (its threads plus the calling one, at most one per face and one per CPU this process may
use). A lone face the landmarker follows on its "solo" network, spread over its threads where it has more than one
(mesh.MeshFollower): its floor is that network, timed the same way (`mesh_ms["solo"]`).

`bench_perception(...) -> dict` is what `make bench` calls; `python -m fer_ros.tools.bench_perception` runs it alone.
Beside it, what fer-bench measures of the machine itself: `machine_info()`, and `matmul_rate(threads)`, the fp32
matrix-multiply rate and the share of the CPU it got.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fer_ros.argtypes import number, out_problem, parse_args

TARGET_MS = 15.0  # landmarks + crops + LBP for one face, median, 640x480, 2-core CPU
STAGES = ("landmarks", "crops_lbp", "tracking", "inference", "total")


def astronaut_face_frame(count: int, size_hw: tuple[int, int] = (480, 640), scale: float | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 frame with `count` copies of the astronaut's head (256x256 px region, resized by `scale`,
    default 0.9 for one face, 0.7 for more, and what fits for more than three) side by side on gray."""
    import cv2
    from skimage import data
    head = data.astronaut()[0:256, 96:352]
    if scale is None:
        scale = 0.9 if count == 1 else min(0.7, 0.9 * size_hw[1] / (count * 256))
    side = int(round(256 * scale))
    head = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
    h, w = size_hw
    frame = np.full((h, w, 3), 110, np.uint8)
    gap = (w - count * side) // (count + 1)
    if gap < 0:
        raise ValueError(f"{count} faces of {side} px do not fit in a {w} px wide frame")
    y0 = (h - side) // 2
    for i in range(count):
        x0 = gap + i * (side + gap)
        frame[y0:y0 + side, x0:x0 + side] = head
    return frame


def _stats(values_ms: list[float]) -> dict[str, float]:
    a = np.asarray(values_ms, np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()),
            "min": float(a.min())}


def _timings_ms(fn: Callable[[], Any], calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t))
    return times


def time_ms(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Wall-clock statistics (ms: median, p90, p95, mean, min) of `repeats` calls of `fn`."""
    return _stats(_timings_ms(fn, repeats))


def time_interleaved_ms(fns: dict[str, Callable[[], Any]], repeats: int, rounds: int = 6) -> dict[str, dict]:
    """time_ms of each of `fns`, its `repeats` calls taken in `rounds` rounds that visit every function in turn: a
    slow spell of the machine (another load for a fraction of a second) then takes a share of every case's calls,
    which their medians pass over, instead of all the calls of the one case it fell on."""
    rounds = max(1, min(rounds, repeats))
    share = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    times: dict[str, list[float]] = {key: [] for key in fns}
    for calls in share:
        for key, fn in fns.items():
            times[key] += _timings_ms(fn, calls)
    return {key: _stats(t) for key, t in times.items()}


def mesh_ms(repeats: int = 30, warmup: int = 5, solo_threads: int = 1) -> dict[str, Any]:
    """Timing statistics (ms) of the face mesh alone on one face, the astronaut's head on a 256 px crop: with
    LiteRT, the network on the view cut around the face (mesh.MeshNetwork.landmark: warp, network, points), the
    way the landmarker follows a known face; without it, a FaceLandmarker in VIDEO mode following the face, so its
    face detector runs on the first frame only. `source` in the result says which. With LiteRT and `solo_threads`
    above 1, `solo` holds the statistics of the network on that many threads too (how a lone face runs, with its
    `threads`), timed in rounds beside the one-thread network's."""
    from mediapipe.tasks.python import BaseOptions, vision
    from skimage import data

    from fer_ros import mesh
    from fer_ros.landmarker import MediaPipeLandmarker, default_landmarker_model
    from fer_ros.tiles import mp_image
    crop = np.ascontiguousarray(data.astronaut()[0:256, 96:352])
    if mesh.available():
        with MediaPipeLandmarker(mode="image", max_faces=1, small_faces=False) as lm:
            faces = lm.detect(crop)
        if faces:
            bundle = default_landmarker_model().read_bytes()
            nets = {"one": mesh.MeshNetwork.from_bundle(bundle)}
            try:
                if int(solo_threads) > 1:
                    nets["solo"] = mesh.MeshNetwork.from_bundle(bundle, int(solo_threads))
                view = mesh.roi_from_points(faces[0].points478)
                for net in nets.values():
                    for _ in range(warmup):
                        net.landmark(crop, view)
                stats = time_interleaved_ms({k: (lambda net=net: net.landmark(crop, view)) for k, net in nets.items()},
                                            repeats)
                out = {**stats["one"], "source": "litert"}
                if "solo" in stats:
                    out["solo"] = {**stats["solo"], "threads": int(solo_threads)}
                return out
            finally:
                for net in nets.values():
                    net.close()
    image = mp_image(crop)
    task = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=default_landmarker_model().read_bytes()),
        running_mode=vision.RunningMode.VIDEO, num_faces=1))
    try:
        step = iter(range(1, 1 << 30))
        for _ in range(warmup):
            task.detect_for_video(image, 33 * next(step))
        return {**time_ms(lambda: task.detect_for_video(image, 33 * next(step)), repeats), "source": "mediapipe"}
    finally:
        task.close()


def landmark_floor_ms(faces: int, mesh_median_ms: float, threads: int, cpus: int | None = None,
                      solo_median_ms: float | None = None) -> float:
    """The least the landmark stage can take for `faces` faces: one mesh per face, run `min(threads + 1, faces,
    cpus)` at a time (the landmarker's worker threads and the calling thread; `cpus` default: usable_cpus()). One
    face with `solo_median_ms` (the solo network's time on the landmarker's threads, which a lone face runs on):
    that time."""
    if faces == 1 and solo_median_ms is not None:
        return solo_median_ms
    at_once = max(1, min(threads + 1, faces, cpus or usable_cpus()))
    return faces * mesh_median_ms / at_once


def bench_perception(repeats: int = 60, warmup: int = 10, face_counts: tuple[int, ...] = (1, 3, 5),
                     crop_size: int = 112, max_faces: int = 5, engine: Any = None, progress: bool = False,
                     fps: float = 30.0, landmark_threads: int = 0) -> dict:
    """Time the perception pipeline. Each case runs `warmup + repeats` frames of one video stream (stamps at
    `fps`), so it measures the steady state: faces tracked, windows full, inference every frame when an engine
    is given; the landmarker has `landmark_threads` (0 = one per core). Returns a JSON-ready dict: per-case stage
    timings (ms: median, p90, mean, min), the landmark floor and its ratio, kernel timings, and whether the
    one-face target (landmarks + crops + LBP median < TARGET_MS) is met."""
    from fer_ros import difference_image
    from fer_ros.crop import CropConfig, align_crop, to_gray
    from fer_ros.lbp import lbp
    from fer_ros.landmarker import MediaPipeLandmarker
    from fer_ros.pipeline import Recognizer

    crop_cfg = CropConfig(size=crop_size)
    if engine is not None:
        from fer_ros.pipeline import engine_preprocess_spec
        spec = engine_preprocess_spec(engine)
        if spec is not None:
            crop_cfg = CropConfig.from_spec(spec["crop"])
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(face_counts) * (warmup + repeats), desc="perception bench", unit="frame")
    cases: dict[str, dict] = {}
    kernels: dict[str, dict] = {}
    solo_threads = 1  # the threads of the network a lone face is followed on
    for count in face_counts:
        frame = astronaut_face_frame(count)
        rec = Recognizer(engine=engine, crop_cfg=None if engine is not None else crop_cfg, max_faces=max_faces,
                         landmarker=MediaPipeLandmarker(mode="video", max_faces=max_faces, threads=landmark_threads))
        workers = len(getattr(rec.landmarker, "_roi_landmarkers", ())) if getattr(rec.landmarker, "_pool", None) \
            else 0
        if getattr(getattr(rec.landmarker, "_follower", None), "_solo", None) is not None:
            solo_threads = max(solo_threads, int(rec.landmarker.threads))
        per_stage: dict[str, list[float]] = {k: [] for k in STAGES + ("perception",)}
        found = []
        try:
            for i in range(warmup + repeats):
                results = rec.process(frame, i / fps)
                if bar is not None:
                    bar.update(1)
                if i < warmup:
                    continue
                t = rec.timings_ms
                found.append(len(results))
                for k in STAGES:
                    per_stage[k].append(t[k])
                per_stage["perception"].append(t["landmarks"] + t["crops_lbp"])
            if count == 1 and results:
                gray = to_gray(frame)
                pts = results[0].points68
                aligned = align_crop(gray, pts, rec.crop_cfg)
                n = np.asarray(rec.preprocessor.face_sample(gray, pts).points68)
                kernels = {
                    "to_gray_640x480": time_ms(lambda: to_gray(frame), repeats),
                    f"align_crop_{rec.crop_cfg.size}": time_ms(lambda: align_crop(gray, pts, rec.crop_cfg), repeats),
                    f"lbp_{rec.crop_cfg.size}": time_ms(lambda: lbp(aligned.gray), repeats),
                    f"difference_image_{difference_image.SIZE}": time_ms(
                        lambda: difference_image.render(n, n + 0.01), repeats),
                }
        finally:
            rec.close()
        cases[f"{count}_face" + ("s" if count != 1 else "")] = {
            "faces_in_frame": count,
            "faces_found_median": float(np.median(found)) if found else 0.0,
            "stages_ms": {k: _stats(v) for k, v in per_stage.items()},
            "landmark_workers": workers,
        }
    if bar is not None:
        bar.close()
    mesh = mesh_ms(max(5, repeats // 2), solo_threads=solo_threads)
    solo = mesh.get("solo", {}).get("median")
    for case in cases.values():
        floor = landmark_floor_ms(case["faces_in_frame"], mesh["median"], case["landmark_workers"],
                                  solo_median_ms=solo)
        case["landmark_floor_ms"] = floor
        case["landmark_floor_ratio"] = case["stages_ms"]["landmarks"]["median"] / floor
    one = cases.get("1_face")
    value = one["stages_ms"]["perception"]["median"] if one else None
    return {
        "benchmark": "perception",
        "frame": "640x480 RGB, astronaut face(s)",
        "crop_size": int(crop_cfg.size if engine is None else rec.crop_cfg.size),
        "max_faces": int(max_faces),
        "repeats": int(repeats),
        "warmup": int(warmup),
        "engine": type(engine).__name__ if engine is not None else None,
        "machine": machine_info(),
        "cases": cases,
        "kernels_ms": kernels,
        "mesh_ms": mesh,
        "target": {"what": "landmarks + crops + LBP, one face, median (ms)", "limit_ms": TARGET_MS,
                   "value_ms": value, "met": bool(value is not None and value < TARGET_MS)},
    }


def machine_info() -> dict:
    """Where the numbers were taken: `cpus` the machine has, `usable_cpus` this process may run on at once
    (usable_cpus())."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "usable_cpus": usable_cpus(), "processor": platform.processor() or platform.machine()}
    try:
        import mediapipe
        info["mediapipe"] = mediapipe.__version__
    except Exception:  # informational only
        pass
    return info


def usable_cpus() -> int:
    """The CPUs this process may run on at once: its affinity, less where a cgroup (v2) CPU quota allows fewer."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def matmul_rate(threads: int, n: int = 512, seconds: float = 1.0) -> dict:
    """Measured fp32 matrix-multiply rate with `threads` torch threads: {"gflops": GFLOP/s, "cpu_share": the CPU
    time this process got over the wall time times the threads that can run at once (at most usable_cpus());
    about 1 on a quiet machine, less where other processes take the cores}."""
    import torch
    old = torch.get_num_threads()
    threads = max(1, threads)
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        for _ in range(3):
            a @ b
        count, t0, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            a @ b
            count += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return {"gflops": 2 * n ** 3 * count / wall / 1e9,
                "cpu_share": cpu / (wall * min(threads, usable_cpus()))}
    finally:
        torch.set_num_threads(old)


def format_perception(result: dict) -> str:
    """A plain-text table of a bench_perception result."""
    machine = result["machine"]
    usable, total = machine.get("usable_cpus", machine.get("cpus")), machine.get("cpus")
    cpus = f"{usable} CPUs" if usable == total else f"{usable} of {total} CPUs usable"
    lines = [f"perception on {result['frame']}, crop {result['crop_size']} px, {result['repeats']} frames ({cpus})"]
    lines.append(f"{'case':<9} {'stage':<11} {'median':>8} {'p95':>8}  ms")
    for name, case in result["cases"].items():
        for stage, s in case["stages_ms"].items():
            lines.append(f"{name:<9} {stage:<11} {s['median']:8.2f} {s['p95']:8.2f}")
        lines.append(f"{name:<9} faces found (median): {case['faces_found_median']:.0f} of {case['faces_in_frame']}")
        lines.append(f"{name:<9} landmarks {case['landmark_floor_ratio']:.2f}x their floor of "
                     f"{case['landmark_floor_ms']:.2f} ms ({case['landmark_workers']} worker threads)")
    lines.append(f"kernel    {'face_mesh_alone':<24} {result['mesh_ms']['median']:8.3f}  "
                 f"({result['mesh_ms'].get('source', 'mediapipe')})")
    solo = result["mesh_ms"].get("solo")
    if solo is not None:
        lines.append(f"kernel    {'face_mesh_solo':<24} {solo['median']:8.3f}  ({solo['threads']} threads: a lone "
                     "face)")
    for name, s in result["kernels_ms"].items():
        lines.append(f"kernel    {name:<24} {s['median']:8.3f}")
    t = result["target"]
    if t["value_ms"] is not None:
        lines.append(f"target: {t['what']} = {t['value_ms']:.2f} ms (limit {t['limit_ms']:.0f} ms): "
                     f"{'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time the perception pipeline (landmarks, crops, LBP, tracking) on a "
                                            "640x480 frame with 1, 3 and 5 real faces.")
    p.add_argument("--repeats", type=number(int, low=1, says=">= 1"), default=60, help="timed frames per case")
    p.add_argument("--warmup", type=number(int, low=0, says=">= 0"), default=10,
                   help="untimed frames first per case")
    p.add_argument("--crop-size", type=number(int, low=8, says=">= 8"), default=112, help="crop side in px")
    p.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    return p


def main(argv=None) -> int:
    args = parse_args(get_args_parser(), argv, "bench_perception")
    if args is None:
        return 2
    why = None if args.json is None else out_problem(args.json)
    if why is not None:  # found before the run, not after it
        print(f"bench_perception: --json {args.json}: {why}", file=sys.stderr)
        return 2
    result = bench_perception(repeats=args.repeats, warmup=args.warmup, crop_size=args.crop_size, progress=True)
    print(format_perception(result))
    if args.json is not None:
        from fer_ros.strict_json import write_json
        write_json(args.json, result, indent=2)  # strict JSON: a figure that is not finite is null
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
