"""The model manifest: what a model is and how its inputs are made, saved as `manifest.json` beside every model.

A model directory holds manifest.json, model.onnx (the inference graph: (clip, geo, geo_valid) -> probs) and
model.pt (a torch state dict, loaded with weights_only=True). The manifest records the class set and names, the
architecture and its config, the preprocessing spec (crop, LBP, landmark scheme, difference image: see
preprocess.PREPROCESS_SPEC) and the sha256 of every file. `load_manifest` refuses a model whose manifest is
malformed, whose files are missing, altered or lie outside its directory (by name or through a link), whose ONNX graphs
read weights from a file beside them (which no sha256 covers), whose network was built for other clips or difference
images than its preprocessing makes, or whose classes or preprocessing differ from this code, with a message naming
the file and what to do; `read_model_file` gives a file's content checked so, for the runtimes to load. The model's
directory is the folder that holds its manifest.json, links followed (an install space that links each file of a
model to the source tree is the model in the source tree).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fer_ros.classes import CLASS_SETS
from fer_ros.preprocess import BASE_CLIP_INPUT, check_preprocess_spec, clip_channels, spec_clip_input

FORMAT = "fer_ros.model/1"
MANIFEST_NAME = "manifest.json"
GET_A_MODEL = ("use the model shipped in fer_ros/models/agn8_ferplus_kdef_ckplus, or train and export one with "
               "`fer-train` (see README)")
# arch_cfg keys the code reads as numbers, and those it passes on to the networks as keyword objects
ARCH_CFG_COUNTS = ("size", "frames", "geo_channels", "geo_size")
ARCH_CFG_OBJECTS = ("app", "geo")
# how many widths the appearance networks (nets/appearance.py) take in arch_cfg.app.widths: arch -> (least, most)
APP_WIDTHS = {"agn3d_c3d": (4, 4), "agn3d_res": (2, None)}


class ModelError(RuntimeError):
    """A model file is missing, corrupt or does not fit this code. The message names the file and what to do."""


@dataclass
class Manifest:
    name: str
    class_set: str
    class_names: list[str]
    arch: str
    arch_cfg: dict
    preprocess: dict
    files: dict = field(default_factory=dict)      # role -> {"path": relative path, "sha256": hex}
    training: dict = field(default_factory=dict)   # free-form summary: data, command, seed, results
    format: str = FORMAT
    directory: Path | None = field(default=None, compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def crop_size(self) -> int:
        return int(self.preprocess["crop"]["size"])

    @property
    def window_length(self) -> int:
        return int(self.preprocess.get("clip", {}).get("frames", self.arch_cfg.get("frames", 3)))

    @property
    def clip_input(self) -> str:
        """The appearance clip's input (preprocess.CLIP_INPUTS)."""
        return spec_clip_input(self.preprocess)

    @property
    def clip_channels(self) -> int:
        return clip_channels(self.clip_input)

    def file(self, role: str) -> Path:
        """Absolute path of a file of the model ('onnx', 'state_dict', ...); ModelError if not recorded."""
        if role not in self.files:
            raise ModelError(f"{self.directory / MANIFEST_NAME}: the manifest lists no {role!r} file; "
                             f"re-export the model with `fer-train --export`")
        return (self.directory / self.files[role]["path"]).resolve()

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("directory")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def save(self, directory: str | Path) -> Path:
        """Write manifest.json into `directory` whole or not at all (write_atomic): a failed or interrupted save
        leaves the manifest that was there."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MANIFEST_NAME
        write_atomic(path, self.to_json().encode("utf-8"))
        self.directory = directory
        return path


def write_atomic(path: str | Path, data: bytes) -> None:
    """Give the file `path` the content `data` at once: written and flushed to disk in a temporary file beside it,
    which then takes its place by a rename (a link at `path` is written through, to the file it leads to). A failed
    or interrupted write leaves the file as it was and no temporary file."""
    path = Path(path).resolve()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(model: str | Path) -> Path:
    """The manifest.json of a model given as its directory, its manifest.json or one of its files."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p / MANIFEST_NAME
    if p.name == MANIFEST_NAME:
        return p
    return p.parent / MANIFEST_NAME


def _check_types(data: dict, path: Path) -> None:
    """ModelError unless the manifest's fields have the types the code reads them as."""
    problems = []
    for key in ("name", "class_set", "arch"):
        if not isinstance(data[key], str):
            problems.append(f"{key} is not a string")
    if not isinstance(data["class_names"], list) or not all(isinstance(c, str) for c in data["class_names"]):
        problems.append("class_names is not a list of strings")
    for key in ("arch_cfg", "preprocess", "files", "training"):
        if not isinstance(data.get(key, {}), dict):
            problems.append(f"{key} is not an object")
    if isinstance(data["arch_cfg"], dict):
        problems += _arch_cfg_problems(data["arch_cfg"], data["arch"])
    if isinstance(data["preprocess"], dict):
        for key in ("clip", "crop", "lbp", "landmark_scheme", "difference_image"):
            if not isinstance(data["preprocess"].get(key, {}), dict):
                problems.append(f"preprocess.{key} is not an object")
        clip = data["preprocess"].get("clip", {})
        crop = data["preprocess"].get("crop", {})
        for name, value in (("clip.frames", clip.get("frames", 1) if isinstance(clip, dict) else 1),
                            ("crop.size", crop.get("size", 1) if isinstance(crop, dict) else 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"preprocess.{name} is not a positive integer")
    if isinstance(data["files"], dict):
        for role, entry in data["files"].items():
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]
                    and isinstance(entry.get("sha256"), str)):
                problems.append(f"files.{role} is not {{\"path\": ..., \"sha256\": ...}}")
            elif "\0" in entry["path"]:
                problems.append(f"files.{role}.path holds a NUL character")
    if problems:
        raise ModelError(f"{path}: malformed manifest ({'; '.join(problems)}); re-export the model or {GET_A_MODEL}")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _arch_cfg_problems(cfg: dict, arch) -> list[str]:
    """What in an arch_cfg does not have the type the code reads it as (absent keys take the networks' defaults)."""
    problems = [f"arch_cfg.{key} is not a positive integer" for key in ARCH_CFG_COUNTS
                if key in cfg and not _is_count(cfg[key])]
    problems += [f"arch_cfg.{key} is not an object" for key in ARCH_CFG_OBJECTS
                 if key in cfg and not isinstance(cfg[key], dict)]
    app = cfg.get("app")
    if isinstance(app, dict) and "widths" in app and isinstance(arch, str) and arch in APP_WIDTHS:
        least, most = APP_WIDTHS[arch]
        widths = app["widths"]
        if not (isinstance(widths, (list, tuple)) and all(_is_count(w) for w in widths)
                and least <= len(widths) <= (most or len(widths))):
            count = f"{least}" if least == most else f"{least} or more"
            problems.append(f"arch_cfg.app.widths is not a list of {count} positive integers (as {arch} takes)")
    if "flip_tta" in cfg and not isinstance(cfg["flip_tta"], bool):
        problems.append("arch_cfg.flip_tta is not true or false")
    if "clip_input" in cfg and not isinstance(cfg["clip_input"], str):
        problems.append("arch_cfg.clip_input is not a string")
    return problems


def _check_inside(path: Path, m: Manifest) -> None:
    """ModelError unless every file the manifest lists lies in the model directory, by its name and once links
    are followed."""
    for role, entry in m.files.items():
        rel = Path(entry["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"{path}: the {role} file {entry['path']!r} lies outside the model directory; a model's "
                             f"files sit in its own directory -- re-export the model or {GET_A_MODEL}")
        try:
            target = (m.directory / rel).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a link loop, on Python before 3.13
            raise ModelError(f"{path}: the {role} file {entry['path']!r} cannot be followed to a file ({exc}); "
                             f"re-export the model or {GET_A_MODEL}") from None
        if not target.is_relative_to(m.directory):
            raise ModelError(f"{path}: the {role} file {entry['path']!r} leads through a link to {target}, outside "
                             f"the model directory {m.directory}; copy the file into the model directory or re-export "
                             f"the model")


def _check_arch_fits_spec(path: Path, m: Manifest) -> None:
    """ModelError unless the network's clip input, frames, crop size and difference image (arch_cfg, where it
    names them) are those the preprocessing spec makes."""
    built_for = m.arch_cfg.get("clip_input", BASE_CLIP_INPUT)
    if built_for != m.clip_input:
        raise ModelError(f"{path}: the network takes clip input {built_for!r} but the preprocessing spec makes "
                         f"{m.clip_input!r}; the manifest is inconsistent -- re-export the model")
    geo = m.preprocess["difference_image"]
    for what, net_key, spec_value in (("frames per clip", "frames", m.window_length),
                                      ("crop size", "size", m.crop_size),
                                      ("px difference images", "geo_size", int(geo["size"])),
                                      ("difference image channels", "geo_channels", len(geo["channels"]))):
        if net_key in m.arch_cfg and m.arch_cfg[net_key] != spec_value:
            raise ModelError(f"{path}: the network takes {m.arch_cfg[net_key]!r} {what} but the preprocessing "
                             f"spec makes {spec_value!r} (arch_cfg.{net_key}); the manifest is inconsistent -- "
                             f"re-export the model")


def _graph_tensors(graph):
    """Every tensor a GraphProto holds: initializers (sparse ones too) and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node):
    """Every tensor a NodeProto's attributes hold (a Constant's value, a loop body's initializers, ...)."""
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        sparse_tensors = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
        for sparse in [*sparse_tensors, *attr.sparse_tensors]:
            yield from (sparse.values, sparse.indices)
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def external_tensors(path: str | Path, data: bytes | None = None) -> list[str]:
    """Names of the tensors of an ONNX graph file (its content `data` where given, else read from `path`) whose
    data lies in another file (data_location EXTERNAL): initializers and constants of the graph, its subgraphs and
    its functions. [] for a file that is no ONNX model (the runtime that reads it refuses it with its own message)."""
    try:
        import onnx
    except ImportError:
        raise ModelError(f"{path}: the onnx package, which checks the model's ONNX graphs, is not installed; "
                         f"`pip install onnx`") from None
    try:
        model = (onnx.load(str(path), load_external_data=False) if data is None
                 else onnx.load_model_from_string(data))
    except Exception:  # noqa: BLE001 -- protobuf's DecodeError and onnx's own errors: not an ONNX model
        return []
    tensors = list(_graph_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors += _node_tensors(node)
    return [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def _check_graph_holds_its_weights(path: Path, role: str, data: bytes) -> None:
    outside = external_tensors(path, data)
    if outside:
        raise ModelError(f"{path}: the {role} graph reads {len(outside)} weight tensor(s) ({', '.join(outside[:3])}"
                         f"{', ...' if len(outside) > 3 else ''}) from another file, which no sha256 in the manifest "
                         f"covers; a model's ONNX graph must hold its weights in the one file (as `fer-train "
                         f"--export` writes it) -- re-export the model or {GET_A_MODEL}")


def load_manifest(model: str | Path, verify_files: bool = True) -> Manifest:
    """Read and check a model's manifest (see module docstring). Raises ModelError."""
    path = manifest_path(model)
    if not Path(model).expanduser().exists():
        raise ModelError(f"model not found: {model}; {GET_A_MODEL}")
    if not path.is_file():
        raise ModelError(f"{path}: no manifest.json beside the model; a fer_ros model is a directory with "
                         f"manifest.json, model.onnx and model.pt -- {GET_A_MODEL}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # Recursion: nested deep
        raise ModelError(f"{path}: not a readable JSON manifest ({exc}); the file is corrupt -- "
                         f"re-export the model or {GET_A_MODEL}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a fer_ros model manifest (format {data.get('format') if isinstance(data, dict) else None!r}, "
                         f"expected {FORMAT!r}); {GET_A_MODEL}")
    missing = [k for k in ("name", "class_set", "class_names", "arch", "arch_cfg", "preprocess", "files")
               if k not in data]
    if missing:
        raise ModelError(f"{path}: manifest lacks {', '.join(missing)}; re-export the model")
    _check_types(data, path)
    known = {k: data[k] for k in Manifest.__dataclass_fields__ if k in data and k != "directory"}
    m = Manifest(**known)
    m.directory = path.resolve().parent
    _check_inside(path, m)
    expected = CLASS_SETS.get(m.class_set)
    if expected is None:
        raise ModelError(f"{path}: unknown class set {m.class_set!r} (this fer_ros knows "
                         f"{', '.join(sorted(CLASS_SETS))}); use a model trained for one of them")
    if list(m.class_names) != list(expected):
        raise ModelError(f"{path}: class names {m.class_names} do not match this fer_ros's {m.class_set} "
                         f"{list(expected)}; retrain the model with this version")
    try:
        check_preprocess_spec(m.preprocess)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: {exc}") from None
    _check_arch_fits_spec(path, m)
    if verify_files:
        for role in m.files:
            read_model_file(m, role)
    return m


def read_model_file(m: Manifest, role: str) -> bytes:
    """The content of the model's `role` file, read once and checked: there, of the manifest's sha256 and, for an
    ONNX graph, holding its weights itself; ModelError otherwise. The runtimes load these bytes, not the file read
    again, so a file changed after its check is never run, nor cached under the checked digest."""
    m.file(role)  # ModelError where the manifest lists no such file
    f = m.directory / m.files[role]["path"]
    if not f.is_file():
        raise ModelError(f"{f}: the {role} file of model {m.name!r} is missing; {_rebuild(m, role)}copy the whole "
                         f"model directory or {GET_A_MODEL}")
    try:
        data = f.read_bytes()
    except OSError as exc:
        raise ModelError(f"{f}: the {role} file of model {m.name!r} cannot be read ({exc}); {_rebuild(m, role)}copy "
                         f"the whole model directory or {GET_A_MODEL}") from None
    digest, want = hashlib.sha256(data).hexdigest(), m.files[role]["sha256"]
    if digest != want:
        raise ModelError(f"{f}: sha256 {digest[:12]}... does not match the manifest's {want[:12]}...; the file "
                         f"is corrupt or was changed -- {_rebuild(m, role)}restore it or {GET_A_MODEL}")
    if role.startswith("onnx") or f.suffix == ".onnx":  # the graphs: onnx, onnx_int8
        _check_graph_holds_its_weights(f, role, data)
    return data


def _rebuild(m: Manifest, role: str) -> str:
    """How to make the `role` file again from the model's other files, as the start of a refusal's what-to-do
    ("" for a file only an export makes): the int8 graph, by fer-quantize on the datasets the model was trained on."""
    from fer_ros.quantize import INT8_ROLE  # here: quantize.py reads manifests
    if role != INT8_ROLE:
        return ""
    return f"rebuild it with `fer-quantize {m.directory} --data PATH ...` (the datasets the model was trained on), "
