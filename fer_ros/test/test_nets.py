"""The networks' shapes and the registry: appearance nets on T=3 clips, the geometric net's pair outputs."""
from __future__ import annotations

import pytest
import torch

from fer_ros.nets import create_model, list_models
from fer_ros.nets.appearance import C3DPaper, IR3DShallow
from fer_ros.nets.geometric import VGG16_STAGES, VGGPairs, pairs

torch.set_num_threads(1)


def test_registry_lists_both_appearance_networks():
    assert list_models() == ["agn3d_c3d", "agn3d_ir", "agn3d_res"]
    with pytest.raises(ValueError, match="unknown model 'vgg'.*agn3d_c3d"):
        create_model("vgg", num_classes=7)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_gives_probabilities(name):
    """Whatever the registry lists: built by name with the shipped model's clip input and mirror averaging, it
    scores a batch, and a face without a neutral reference gets no geometric logits."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, size=32, app={"hidden": 16}, geo={"width": 2, "hidden": 16},
                         flip_tta=True, clip_input="lbp+gray_norm+delta_norm").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 32, 32), torch.rand(2, 2, 32, 32) * 2 - 1, torch.tensor([1.0, 0.0]))
    assert out.probs.shape == (2, 7) and out.l1.shape == (2, 7)
    assert torch.allclose(out.probs.sum(1), torch.ones(2), atol=1e-6)
    assert torch.all(out.pair_logits[1] == 0) and torch.all(out.l2[1] == 0)


@pytest.mark.parametrize("size", [32, 48])
def test_c3d_paper_layers_and_shape(size):
    net = C3DPaper(7, size=size, frames=3).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool3d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3, 3) for c in convs)
    assert len(pools) == 3 and len(norms) == 1 and len(linears) == 2 and len(drops) == 2
    # T = 3 can be halved in time once: exactly one pool reduces the temporal axis
    assert sum(p.kernel_size[0] == 2 for p in pools) == 1
    out = net(torch.rand(2, 1, 3, size, size))
    assert out.shape == (2, 7)


def test_ir3d_shallow_shape_and_residual_blocks():
    net = IR3DShallow(8, size=48, frames=3, stem=8, blocks=2).eval()
    assert net(torch.rand(3, 1, 3, 48, 48)).shape == (3, 8)
    assert len(net.blocks) == 2


def test_geometric_network_has_one_decision_per_pair():
    assert pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    net = VGGPairs(7, in_channels=2, size=64, width=4).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == sum(VGG16_STAGES) == 13
    out = net(torch.rand(2, 2, 64, 64))
    assert out.shape == (2, 21, 2)


def test_create_model_builds_agn_with_config():
    model = create_model("agn3d_c3d", num_classes=8, size=32, geo_size=64,
                         app={"widths": [4, 8, 8, 8], "hidden": 16}, geo={"width": 2, "hidden": 16}).eval()
    out = model(torch.rand(2, 1, 3, 32, 32), torch.rand(2, 2, 64, 64), torch.ones(2))
    assert out.probs.shape == (2, 8)
    assert torch.allclose(out.probs.sum(1), torch.ones(2), atol=1e-6)
