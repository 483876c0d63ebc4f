"""`fer-quantize`: add an int8 graph (model.int8.onnx) to a model directory, calibrated on faces of its training data.

    fer-quantize fer_ros/models/agn8_ferplus_kdef_ckplus --data ../shared/data/ferplus --data ../shared/data/kdef \
                 --data ../shared/data/ckplus

The datasets are read as fer-train reads them (same layouts, same preprocessing cache); the calibration faces are
drawn from their training samples only (a dataset's own held-out split, such as FER+ Valid, is never used), the
same number from each dataset: --data takes a dataset once and without fer-train's :WEIGHT. The int8 graph is
compared with the fp32 graph on those faces and refused when it changes the top class of more than 5% of them. The
manifest records the file, its sha256, the scheme, the comparison and this command. `fer-train --export` does the
same for the model it exports. Of the model's files only the fp32 graph is checked against the manifest: a missing
or changed model.int8.onnx is rebuilt.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from fer_ros.argtypes import HelpFormatter, number, parse_args

PROG = "fer-quantize"
DESCRIPTION = ("add an int8 graph (model.int8.onnx, what onnxruntime runs on a CPU) to a model directory, calibrated "
               "on faces of the datasets it was trained on")


def dataset(text: str):
    """argparse type of --data: PATH (a Source of weight 1); a PATH:WEIGHT is refused, as no weight applies."""
    from fer_ros.training.data.samples import parse_source
    try:
        src = parse_source(text)
    except ValueError:
        src = None
    if src is None or src.root != Path(text).expanduser():
        raise argparse.ArgumentTypeError(f"takes no weight, got {text!r}: each dataset gives the same number of "
                                         f"calibration faces, so a weight does not apply; give the dataset's PATH")
    return src


def get_args_parser() -> argparse.ArgumentParser:
    from fer_ros.training.calibration import DEFAULT_SAMPLES
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("model_dir", metavar="MODEL", help="model directory (manifest.json, model.onnx); model.int8.onnx is written into it")
    p.add_argument("--data", required=True, action="append", type=dataset, metavar="PATH",
                   help="a dataset the model was trained on (any layout fer-train reads); repeat for several")
    p.add_argument("--samples", type=number(int, low=1, says="at least 1"), default=DEFAULT_SAMPLES,
                   help="calibration faces, shared equally between the datasets")
    p.add_argument("--seed", type=number(int, low=0, says="a whole number of at least 0"), default=0,
                   help="seed of the calibration draw")
    p.add_argument("--cache-dir", default="data_cache", help="preprocessed-image cache (fer-train's; never commit it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def cache_problem(cache_dir: Path, exc: Exception) -> str | None:
    """The one-line refusal for an exception of load_samples that the --cache-dir folder caused: a file operation
    in it that failed (a damaged cache file is a CacheError, refused with the datasets' errors); None when the
    folder is not at fault."""
    if isinstance(exc, OSError):
        inside = cache_dir.resolve()
        for name in (exc.filename, exc.filename2):
            if name is not None and Path(os.fsdecode(name)).resolve().is_relative_to(inside):
                return (f"--cache-dir {cache_dir}: the image cache cannot be written there ({os.fsdecode(name)}: "
                        f"{exc.strerror or exc}); choose another --cache-dir")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(get_args_parser(), argv, PROG)
    if args is None:
        return 2
    from fer_ros.crop import CropConfig
    from fer_ros.landmarker import LandmarkerError
    from fer_ros.manifest import ModelError
    from fer_ros.quantize import add_int8, load_for_int8
    from fer_ros.training.calibration import calibration_set
    from fer_ros.training.data.datasets import DatasetError
    from fer_ros.training.data.samples import (distinct_sources, final_train_indices, load_samples,
                                               require_training_samples)

    t0 = time.time()
    try:
        distinct_sources(args.data, "give each dataset once (twice, it would give twice the calibration faces of "
                                    "the others, the same faces twice over)")
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = load_for_int8(args.model_dir)  # a missing or changed model.int8.onnx is what is rebuilt
    except ModelError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from fer_ros.training.data.cache import cache_dir_problem
    cache_dir = Path(args.cache_dir)
    problem = cache_dir_problem(cache_dir)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    crop = CropConfig.from_spec(manifest.preprocess["crop"])  # the node's crop (pipeline.py)
    try:
        samples, info = load_samples(args.data, tuple(manifest.class_names), manifest.window_length, crop,
                                     cache_dir, progress=not args.no_progress, log=lambda m: print(f"[{PROG}] {m}"))
        require_training_samples(samples, info)
    except (DatasetError, LandmarkerError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 -- refused below only where the cache folder is at fault
        problem = cache_problem(cache_dir, exc)
        if problem is None:
            raise
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    idx = final_train_indices(samples)
    batches, drawn = calibration_set(samples, idx, args.samples, args.seed, manifest.clip_input)
    command = PROG + " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        manifest = add_int8(manifest.directory, batches, {"calibration_faces": drawn, "command": command})
    except ModelError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    check = manifest.training["int8"]["against_fp32"]
    print(f"[{PROG}] wrote {Path(manifest.directory) / manifest.files['onnx_int8']['path']}: on {check['faces']} "
          f"calibration faces it keeps the fp32 graph's top class on {check['top_class_agreement']:.3f}, "
          f"largest probability difference {check['max_abs_diff']:.3f} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
