"""The int8 form of a model's ONNX graph: what onnxruntime runs on a CPU when the model has one.

`quantize_graph(src, dst, batches)` writes an int8 copy of an fp32 graph by onnxruntime's static quantization:
QuantizeLinear/DequantizeLinear pairs around every convolution and fully connected layer, weights as int8 per
output channel on 7 bits (`reduce_range`: no overflow in the uint8 x int8 products of x86 CPUs without VNNI),
activations as uint8 with ranges from the calibration batches (the largest and smallest value seen). A ReLU after
a convolution is quantized with it: the convolution's output takes the ReLU's range, so the next convolution (or
max pooling, which onnxruntime then runs on the uint8 values) reads it without a conversion back to float and
again to uint8 between them. The rest of the graph (the residual sums, the pair choice, the softmax) stays float.

`add_int8(model_dir, batches, record)` makes `model.int8.onnx` beside a model's `model.onnx`, compares the two on
the calibration batches and records the file (role `onnx_int8`, its sha256) and the comparison in the manifest.
The calibration batches are network inputs ({"clip", "geo", "geo_valid"} arrays) of faces like those the model
will see: training/calibration.py draws them from the training data.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fer_ros.manifest import MANIFEST_NAME, Manifest, ModelError, load_manifest, read_model_file, sha256_file

INT8_FILE = "model.int8.onnx"
INT8_ROLE = "onnx_int8"
# Relu: on a 2-core Xeon VM with AMX, onnxruntime with 2 threads, the default model, 12 alternating rounds: 1.26
# against 1.69 ms at batch 1 and 6.9 against 9.7 ms at batch 8, faster in every round; the fp32 top class kept on
# 0.9953 of 1,500 training faces outside the calibration draw, as without it, and 99.2% of FER+ Valid's labels
# against 98.3%. MaxPool as well gives the same optimised graph. Quantizing every operation (the residual sums and
# the pair choice too) lost about a point of FER+ and KDEF with another set of weights.
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Relu")
# the share of calibration faces whose top class the int8 graph must keep; below it the graph is refused
MIN_AGREEMENT = 0.95
# a face whose fp32 probabilities put another class within TIE of the top one is a tie: the int8 graph picking that
# class keeps the fp32 graph's decision as far as it was one (a model trained briefly on few faces has many ties)
TIE = 0.01
SCHEME = {"format": "QDQ", "weights": "int8, per output channel, 7-bit range", "activations": "uint8",
          "calibration": "min-max", "ops": list(QUANTIZED_OPS)}


def quantize_graph(src: str | Path, dst: str | Path, batches: Iterable[dict]) -> None:
    """Write the int8 form of the fp32 graph `src` to `dst` (see module docstring), its activation ranges
    measured on `batches` (dicts of the graph's input arrays)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, items: Iterable[dict]) -> None:
            self.items = iter(items)

        def get_next(self):
            return next(self.items, None)

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer logs a line per skipped node at INFO/WARNING
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # onnx shape inference and graph folding only; the symbolic pass cannot follow the pair gather
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(dst), Reader(batches), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            op_types_to_quantize=list(QUANTIZED_OPS))
    finally:
        quiet.setLevel(level)


def compare_graphs(fp32: str | Path, int8: str | Path, batches: Iterable[dict]) -> dict:
    """How the int8 graph's probabilities differ from the fp32 graph's on `batches`: the share of faces with the
    same top class, the share whose int8 top class is the fp32 top class or within TIE of it in the fp32
    probabilities (the share add_int8 checks), the largest and the mean absolute difference."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    a = ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
    same, kept, faces, worst, total = 0, 0, 0, 0.0, 0.0
    for feed in batches:
        pa, pb = a.run(["probs"], feed)[0], b.run(["probs"], feed)[0]
        same += int((pa.argmax(1) == pb.argmax(1)).sum())
        kept += int((pa[np.arange(len(pa)), pb.argmax(1)] >= pa.max(axis=1) - TIE).sum())
        faces += len(pa)
        diff = np.abs(pa - pb)
        worst, total = max(worst, float(diff.max())), total + float(diff.max(axis=1).sum())
    if faces == 0:
        raise ValueError("no calibration faces to compare the graphs on")
    return {"faces": faces, "top_class_agreement": same / faces, "agreement_beyond_ties": kept / faces,
            "max_abs_diff": worst,
            "mean_max_abs_diff": total / faces}


def load_for_int8(model_dir: str | Path) -> Manifest:
    """The model's manifest, checked as load_manifest checks it but for its files: only the fp32 graph, the one
    file quantizing reads, is checked against its sha256; an int8 graph that is missing or changed is what is
    rebuilt. ModelError when the model has no fp32 graph or it is missing or changed."""
    manifest = load_manifest(model_dir, verify_files=False)
    if "onnx" not in manifest.files:
        raise ModelError(f"{manifest.directory}: the model has no ONNX graph to quantize; export it with "
                         f"`fer-train --export`")
    read_model_file(manifest, "onnx")
    return manifest


def add_int8(model_dir: str | Path, batches: list[dict], record: dict | None = None) -> Manifest:
    """Quantize the model's model.onnx into model.int8.onnx on `batches`, check it against the fp32 graph on the
    same batches and record it in manifest.json (file, sha256, scheme, the comparison and `record`, e.g. what the
    calibration faces were). ModelError when the int8 graph keeps the top class of fewer than MIN_AGREEMENT of
    the faces (a face the fp32 graph calls a tie counting as kept when int8 picks either class: see TIE). The new
    graph is built and checked beside the model under another name and takes the place of model.int8.onnx only
    once it passes; the int8 graph and the manifest it replaces are kept aside until the new manifest is written
    and put back if anything fails (an interrupt too), so a failed or interrupted run leaves the model (and an
    int8 graph it had) as it was. An int8 graph that is missing or changed is replaced (load_for_int8)."""
    manifest = load_for_int8(model_dir)
    src = manifest.file("onnx")
    dst = manifest.directory / INT8_FILE
    new = dst.with_name(dst.name + ".new")
    manifest_file = manifest.directory / MANIFEST_NAME
    had_int8 = dst.exists()
    asides: dict[Path, Path] = {}
    try:
        quantize_graph(src, new, batches)
        check = compare_graphs(src, new, batches)
        if check["agreement_beyond_ties"] < MIN_AGREEMENT:
            kept = "its int8 graph is left as it was" if INT8_ROLE in manifest.files else "it has no int8 graph"
            raise ModelError(f"{dst}: the int8 graph keeps the fp32 graph's top class on only "
                             f"{check['agreement_beyond_ties']:.3f} of {check['faces']} calibration faces, a pick "
                             f"within {TIE} of the top in fp32 counted as kept (at least {MIN_AGREEMENT} needed); "
                             f"the model is not changed: {kept}")
        digest = sha256_file(new)
        manifest.files[INT8_ROLE] = {"path": INT8_FILE, "sha256": digest}
        manifest.training = dict(manifest.training, int8={**SCHEME, **(record or {}), "against_fp32": check})
        for path in (manifest_file, dst):
            if path.exists():
                asides[path] = _set_aside(path)
        os.replace(new, dst)
        manifest.save(manifest.directory)
    except BaseException:
        _put_back(asides, dst, had_int8)
        raise
    finally:
        new.unlink(missing_ok=True)
        for aside in asides.values():
            aside.unlink(missing_ok=True)
    return manifest


def _set_aside(path: Path) -> Path:
    """A copy of the file `path` beside it, to put back with os.replace: a second link to the file where the file
    system has them (what replaces `path` by a rename leaves it as it was), else a copy."""
    aside = path.with_name(path.name + ".old")
    aside.unlink(missing_ok=True)
    try:
        try:
            os.link(path, aside)
        except OSError:
            shutil.copy2(path, aside)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise
    return aside


def _put_back(asides: dict[Path, Path], int8: Path, had_int8: bool) -> None:
    """Put the files set aside back in their places; an int8 graph the model did not have before is removed."""
    for path, aside in asides.items():
        if aside.exists():
            os.replace(aside, path)
    if not had_int8:
        int8.unlink(missing_ok=True)
