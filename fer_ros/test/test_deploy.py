"""The inference form (nets/deploy.py): a C3DRes stem folded into 2D convolutions computes what the 3D stem does,
in the model's dtype and on its device, and the exported ONNX graph holds no 3D convolution; every registered model
exports to ONNX."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_ros.nets import create_model, list_models
from fer_ros.nets.appearance import C3DRes
from fer_ros.nets.deploy import StemAs2d, conv3d_as_conv2d, inference_form

torch.set_num_threads(1)


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine terms far from their initial values, so that folding them in is tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


# A small agn3d_res as the shipped model is built (its clip input, mirror averaging), 8 classes.
SMALL_RES_CFG = {"size": 32, "frames": 3, "app": {"widths": (6, 8, 12), "hidden": 16},
                 "geo": {"width": 2, "hidden": 16}, "flip_tta": True, "clip_input": "lbp+gray_norm+delta_norm"}


def _small_res_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("agn3d_res", num_classes=8, **SMALL_RES_CFG)
    _randomise_batchnorm(model)
    return model.eval()


@pytest.mark.parametrize("frames,kernel,padding", [(3, 3, 1), (3, 3, 0), (5, 3, 1), (3, 1, 0), (2, 2, 0)])
def test_a_conv3d_is_a_conv2d_over_frames_times_channels(frames, kernel, padding):
    torch.manual_seed(frames * 10 + kernel + padding)
    conv = nn.Conv3d(2, 4, (kernel, 3, 3), padding=(padding, 1, 1), bias=True)
    bn = nn.BatchNorm3d(4)
    _randomise_batchnorm(bn)
    bn.eval()
    x = torch.rand(3, 2, frames, 10, 12)
    conv2d, frames_out = conv3d_as_conv2d(conv, bn, frames)
    with torch.no_grad():
        want = bn(conv(x))
        got = conv2d(x.reshape(3, 2 * frames, 10, 12)).reshape(3, 4, frames_out, 10, 12)
    assert frames_out == want.shape[2]
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_a_conv3d_the_2d_form_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="stride 1"):
        conv3d_as_conv2d(nn.Conv3d(1, 2, 3, stride=(2, 1, 1)), None, 3)
    with pytest.raises(ValueError, match="does not fit 2 frames"):
        conv3d_as_conv2d(nn.Conv3d(1, 2, 3, padding=0), None, 2)


@pytest.mark.parametrize("frames,multiple,channels", [(3, 16, 32), (2, 16, 16), (3, 1, 18), (3, 8, 24)])
def test_the_folded_stem_gives_the_3d_stems_features(frames, multiple, channels):
    """Whether or not its first convolution's output is padded with zero channels (6 widths x 3 frames = 18)."""
    torch.manual_seed(frames)
    net = C3DRes(8, size=32, frames=frames, widths=(6, 8, 12), in_channels=3)
    _randomise_batchnorm(net)
    net.eval()
    x = torch.rand(4, 3, frames, 32, 32)
    stem = StemAs2d(net.stem, frames, channel_multiple=multiple)
    assert stem.body[0].out_channels == stem.body[3].in_channels == channels
    with torch.no_grad():
        want = net.stem(x)
        got = stem(x)
    assert got.shape == want.shape == (4, 8, 1, 16, 16)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_inference_form_keeps_the_models_outputs_and_leaves_the_model_alone():
    model = _small_res_model(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = inference_form(model)
    assert isinstance(folded.appearance.stem, StemAs2d) and not isinstance(model.appearance.stem, StemAs2d)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, nn.Conv3d) for m in folded.modules())
    clip, geo, valid = torch.rand(5, 3, 3, 32, 32), torch.rand(5, 2, 32, 32) * 2 - 1, torch.tensor([1., 0, 1, 1, 0])
    with torch.no_grad():
        a, b = model(clip, geo, valid), folded(clip, geo, valid)
    assert torch.allclose(a.l1, b.l1, atol=1e-4) and torch.allclose(a.probs, b.probs, atol=1e-5)
    assert torch.equal(a.pair_classes, b.pair_classes)


def test_inference_form_keeps_the_models_dtype_and_outputs_in_float64():
    model = _small_res_model(seed=5).double()
    folded = inference_form(model)
    assert {p.dtype for p in folded.parameters()} == {torch.float64}
    clip, geo = torch.rand(3, 3, 3, 32, 32, dtype=torch.float64), torch.rand(3, 2, 32, 32, dtype=torch.float64) * 2 - 1
    valid = torch.tensor([1., 0, 1], dtype=torch.float64)
    with torch.no_grad():
        a, b = model(clip, geo, valid), folded(clip, geo, valid)
    assert b.probs.dtype == torch.float64
    assert torch.allclose(a.l1, b.l1, rtol=0, atol=1e-10), (a.l1 - b.l1).abs().max()
    assert torch.allclose(a.probs, b.probs, rtol=0, atol=1e-12)


def test_the_folded_stem_is_made_on_the_models_device():
    """On the meta device (no values): a convolution without bias, the padded channels, all of it stays there."""
    net = C3DRes(8, size=32, frames=3, widths=(6, 8, 12), in_channels=3).eval()
    net.stem[0][0].bias = None
    stem = StemAs2d(net.to("meta").stem, 3)
    assert stem.body[0].out_channels == 32
    assert {p.device.type for p in stem.parameters()} == {"meta"}
    assert stem(torch.empty(2, 3, 3, 32, 32, device="meta")).shape == (2, 8, 1, 16, 16)


def test_other_appearance_networks_pass_through_unchanged():
    model = create_model("agn3d_c3d", num_classes=7, size=32, app={"hidden": 16}, geo={"width": 2, "hidden": 16})
    folded = inference_form(model)
    assert folded is not model
    assert sum(isinstance(m, nn.Conv3d) for m in folded.modules()) == 4


def test_the_exported_graph_has_no_3d_convolution_and_matches_torch(tmp_path):
    """export_model checks the ONNX probabilities against the 3D torch model (it raises past 1e-4), so the folded
    graph is the trained model; and every Conv in it is a 2D one (4-D weights)."""
    onnx = pytest.importorskip("onnx")
    from fer_ros.classes import class_names
    from fer_ros.crop import CropConfig
    from fer_ros.export import export_model
    from fer_ros.manifest import Manifest
    from fer_ros.preprocess import PREPROCESS_SPEC
    model = _small_res_model(seed=2)
    names = list(class_names("ckplus8"))
    manifest = Manifest(name="folded", class_set="ckplus8", class_names=names, arch="agn3d_res",
                        arch_cfg=dict(SMALL_RES_CFG), preprocess=PREPROCESS_SPEC(
                            CropConfig(size=32), clip_input=SMALL_RES_CFG["clip_input"]))
    export_model(model, manifest, tmp_path)
    assert manifest.training["export_onnx_max_abs_diff"] < 1e-5
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    dims = {init.name: len(init.dims) for init in graph.initializer}
    conv_weights = [node.input[1] for node in graph.node if node.op_type == "Conv"]
    assert conv_weights and all(w in dims for w in conv_weights)
    assert {dims[w] for w in conv_weights} == {4}


# Small widths for each appearance network's parameters; a network not named here is built at its defaults.
SMALL_APP_CFG = {"agn3d_c3d": {"widths": (4, 8, 8, 8)}, "agn3d_ir": {"stem": 8}, "agn3d_res": {"widths": (6, 8, 12)}}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_to_onnx_and_matches_torch(tmp_path, name):
    """Whatever the registry lists (what fer-train --model offers), built small with the shipped model's clip input
    and mirror averaging: export_model checks onnxruntime's probabilities against torch at batch 1 and 5."""
    pytest.importorskip("onnx")
    from fer_ros.classes import class_names
    from fer_ros.crop import CropConfig
    from fer_ros.export import export_model
    from fer_ros.manifest import Manifest, load_manifest
    from fer_ros.preprocess import PREPROCESS_SPEC
    cfg = {**SMALL_RES_CFG, "app": {"hidden": 16, **SMALL_APP_CFG.get(name, {})}}
    torch.manual_seed(6)
    model = create_model(name, num_classes=8, **cfg)
    _randomise_batchnorm(model)
    manifest = Manifest(name=name, class_set="ckplus8", class_names=list(class_names("ckplus8")), arch=name,
                        arch_cfg=cfg, preprocess=PREPROCESS_SPEC(CropConfig(size=32), clip_input=cfg["clip_input"]))
    export_model(model, manifest, tmp_path / name)
    assert manifest.training["export_onnx_max_abs_diff"] < 1e-5
    assert load_manifest(tmp_path / name).arch == name


def _small_res_manifest(name: str = "small"):
    from fer_ros.classes import class_names
    from fer_ros.crop import CropConfig
    from fer_ros.manifest import Manifest
    from fer_ros.preprocess import PREPROCESS_SPEC
    return Manifest(name=name, class_set="ckplus8", class_names=list(class_names("ckplus8")), arch="agn3d_res",
                    arch_cfg=dict(SMALL_RES_CFG),
                    preprocess=PREPROCESS_SPEC(CropConfig(size=32), clip_input=SMALL_RES_CFG["clip_input"]))


def _folder(path) -> dict:
    return {p.name: p.read_bytes() for p in path.iterdir()}


@pytest.mark.parametrize("failure", ["parity", "interrupted"])
def test_a_failed_export_over_a_model_leaves_that_model_as_it_was(tmp_path, monkeypatch, failure):
    """The new files are made and checked beside the model directory; nothing of them reaches it, or stays beside
    it, when a check fails or the export is interrupted."""
    pytest.importorskip("onnx")
    from fer_ros import export
    from fer_ros.manifest import ModelError, load_manifest
    out = tmp_path / "model"
    export.export_model(_small_res_model(seed=3), _small_res_manifest(), out)
    (out / "MODEL_CARD.md").write_text("the card\n")
    before = _folder(out)
    if failure == "parity":
        with pytest.raises(ModelError, match=rf"{out}/model.onnx: ONNX probabilities differ from torch .* nothing "
                                             rf"was written to {out}"):
            export.export_model(_small_res_model(seed=4), _small_res_manifest(), out, atol=-1.0)
    else:
        def interrupted(*args):
            raise KeyboardInterrupt
        monkeypatch.setattr(export, "onnx_parity", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export.export_model(_small_res_model(seed=4), _small_res_manifest(), out)
    assert _folder(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    load_manifest(out)


def test_an_export_over_a_model_replaces_its_files_and_keeps_the_others(tmp_path):
    pytest.importorskip("onnx")
    from fer_ros.export import export_model
    from fer_ros.manifest import load_manifest, sha256_file
    out = tmp_path / "model"
    export_model(_small_res_model(seed=3), _small_res_manifest("first"), out)
    (out / "MODEL_CARD.md").write_text("the card\n")
    old = sha256_file(out / "model.pt")
    made = export_model(_small_res_model(seed=4), _small_res_manifest("second"), out)
    assert made.directory == out
    loaded = load_manifest(out)
    assert loaded.name == "second" and sha256_file(out / "model.pt") != old
    assert (out / "MODEL_CARD.md").read_text() == "the card\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_fer_train_does_not_export_over_a_model_unless_told_to(tmp_path, capsys):
    """Refused before any data is read: --data names nothing here, so going further fails on the data instead."""
    from fer_ros.training import train
    out = tmp_path / "model"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    argv = ["--data", str(tmp_path / "no_data"), "--folds", "0", "--export", str(out)]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"fer-train: {out} already holds a model (manifest.json)" in err and "--overwrite" in err
    assert train.main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "already holds a model" not in err and "no_data" in err
    assert (out / "manifest.json").read_text() == "{}"
