"""Export a trained AGN3D to a model directory: model.pt (state dict), model.onnx (probs graph), optionally
model.ts (TorchScript), and manifest.json with their sha256; the ONNX graph is checked against torch. The files are
written and checked in a folder beside the model directory and move into it only once every check passed."""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

from fer_ros.difference_image import SIZE as GEO_SIZE
from fer_ros.manifest import MANIFEST_NAME, Manifest, ModelError, load_manifest, read_model_file, sha256_file
from fer_ros.nets.agn import AGN3D, ProbsOnly
from fer_ros.nets.deploy import inference_form
from fer_ros.nets.registry import create_model


def example_inputs(manifest: Manifest, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    cfg = manifest.arch_cfg
    s, t = int(cfg.get("size", manifest.crop_size)), int(cfg.get("frames", 3))
    c, gs = int(cfg.get("geo_channels", 2)), int(cfg.get("geo_size", GEO_SIZE))
    clip = torch.rand(batch, manifest.clip_channels, t, s, s, generator=g)
    geo = torch.rand(batch, c, gs, gs, generator=g) * 2 - 1
    valid = torch.ones(batch)
    valid[::2] = 0.0
    return clip, geo, valid


def export_onnx(model: AGN3D, manifest: Manifest, path: Path) -> None:
    """The probabilities graph of the model's inference form (nets/deploy.py), batch size dynamic."""
    wrapper = ProbsOnly(inference_form(model)).eval()
    inputs = example_inputs(manifest)
    batch = torch.export.Dim("batch", min=1, max=256)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter lists torchvision ops it skips; irrelevant here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                wrapper, inputs, input_names=["clip", "geo", "geo_valid"], output_names=["probs"],
                dynamic_shapes=({0: batch}, {0: batch}, {0: batch}), dynamo=True, verbose=False)
        finally:
            quiet.setLevel(level)
    program.save(str(path))


def export_model(model: AGN3D, manifest: Manifest, out_dir: str | Path, torchscript: bool = False,
                 atol: float = 1e-4) -> Manifest:
    """Write the model directory and return its manifest (files and sha256 filled in). Raises ModelError when the
    ONNX graph does not reproduce the torch probabilities within `atol`. The files are made and checked in a
    folder beside `out_dir` and move into it only once they passed, so a failed or interrupted export leaves a model
    already in `out_dir` as it was."""
    out = Path(out_dir)
    target = out.resolve()
    if target.exists() and not target.is_dir():
        raise ModelError(f"{out} is a file, not a model directory; export to a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.export-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    try:
        names = write_model_files(model.eval(), manifest, work, torchscript, atol, target)
        move_in(work, target, names)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest.directory = out
    return manifest


def write_model_files(model: AGN3D, manifest: Manifest, out: Path, torchscript: bool, atol: float,
                      target: Path) -> list[str]:
    """Write model.pt, model.onnx (model.ts) and manifest.json to the folder `out` and return their names, the
    manifest last; ModelError, naming the model directory `target` they are for, when the ONNX graph strays from
    torch by more than `atol`."""
    torch.save(model.state_dict(), out / "model.pt")
    export_onnx(model, manifest, out / "model.onnx")
    files = {"state_dict": "model.pt", "onnx": "model.onnx"}
    if torchscript:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still asked for
            scripted = torch.jit.trace(ProbsOnly(model).eval(), example_inputs(manifest), check_trace=False)
            scripted.save(str(out / "model.ts"))
        files["torchscript"] = "model.ts"
    parity = onnx_parity(model, out / "model.onnx", manifest)
    if parity > atol:
        raise ModelError(f"{target / 'model.onnx'}: ONNX probabilities differ from torch by {parity:.2e} "
                         f"(> {atol:.0e}); the export is wrong, nothing was written to {target}")
    manifest.files = {role: {"path": name, "sha256": sha256_file(out / name)} for role, name in files.items()}
    manifest.training = dict(manifest.training, export_onnx_max_abs_diff=parity)
    manifest.save(out)
    return [*files.values(), MANIFEST_NAME]


def move_in(work: Path, out: Path, names: list[str]) -> None:
    """Move the checked files `names` (the manifest last) from the folder `work` into the model directory `out`
    (beside it, on the same file system): the folder itself where there is none yet, else file by file after the
    old manifest is removed, and with it the files it lists that `names` does not (an int8 graph of the model
    exported before, say; other files in `out` stay), so that `out` never holds a manifest beside files it does not
    describe."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(work, out)
        return
    stale = set(_listed_files(out)) - {Path(name) for name in names}
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for rel in stale:
        (out / rel).unlink(missing_ok=True)
    for name in names:
        os.replace(work / name, out / name)


def _listed_files(model_dir: Path) -> list[Path]:
    """The files the manifest in `model_dir` lists that lie in the folder (their own folders too once links are
    followed), as paths relative to it; [] where there is no readable manifest."""
    try:
        data = json.loads((model_dir / MANIFEST_NAME).read_text())
        entries = list(data["files"].values())
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return []
    inside, found = model_dir.resolve(), []
    for entry in entries:
        rel = Path(entry["path"]) if isinstance(entry, dict) and isinstance(entry.get("path"), str) else None
        if rel is None or not rel.parts or rel.is_absolute() or ".." in rel.parts:
            continue
        path = model_dir / rel
        if path.parent.resolve().is_relative_to(inside) and (path.is_file() or path.is_symlink()):
            found.append(rel)
    return found


def onnx_parity(model: AGN3D, onnx_path: Path, manifest: Manifest) -> float:
    """Max abs difference of the probabilities of torch and onnxruntime on random inputs (batch 1 and 5)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 5):
        clip, geo, valid = example_inputs(manifest, batch=batch, seed=batch)
        with torch.no_grad():
            ref = model(clip, geo, valid).probs.numpy()
        got = sess.run(["probs"], {"clip": clip.numpy(), "geo": geo.numpy(), "geo_valid": valid.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def build_network(manifest: Manifest) -> AGN3D:
    """The untrained network the manifest's arch and arch_cfg describe; ModelError where they build none."""
    try:
        return create_model(manifest.arch, num_classes=manifest.num_classes, **manifest.arch_cfg)
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:  # RuntimeError: torch refusing a layer's size
        raise ModelError(f"{manifest.directory / MANIFEST_NAME}: arch {manifest.arch!r} with its arch_cfg does not "
                         f"build a network ({type(exc).__name__}: {exc}); re-export the model or use a fer_ros "
                         f"version that knows this network") from None


def load_torch_model(model_dir: str | Path, manifest: Manifest | None = None) -> tuple[AGN3D, Manifest]:
    """Build the model from its manifest and load model.pt with weights_only=True (the file stays data), from the
    bytes whose sha256 was checked (manifest.read_model_file)."""
    manifest = manifest or load_manifest(model_dir)
    model = build_network(manifest)
    path = manifest.file("state_dict")
    data = read_model_file(manifest, "state_dict")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 -- any failure here means a bad file
        raise ModelError(f"{path}: cannot load the torch state dict ({type(exc).__name__}: {exc}); restore the "
                         f"file or re-export the model") from None
    return model.eval(), manifest
