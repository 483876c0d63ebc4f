"""Mixup of 3DAGN batches (fer_ros/training/experimental/mixup.py): the blend of inputs, labels and references, and
the blended loss against the 3DAGN loss computed by hand for either label."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_ros.nets import create_model
from fer_ros.nets.agn import agn_loss
from fer_ros.training.experimental.mixup import draw_lambda, mix_batch, mixup_loss


def _batch(b=6, k=7):
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(b, 2, 3, 16, 16, generator=g)
    geo = torch.rand(b, 2, 64, 64, generator=g)
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])[:b]
    y = torch.arange(b) % k
    return clip, geo, valid, y


def test_lambda_is_folded_to_the_dominant_share():
    rng = np.random.default_rng(3)
    lams = [draw_lambda(0.4, rng) for _ in range(500)]
    assert all(0.5 <= lam <= 1.0 for lam in lams)
    assert np.mean(lams) < 0.95  # real blends, not the identity
    with pytest.raises(ValueError, match="above 0"):
        draw_lambda(0.0, rng)


def test_a_blend_mixes_inputs_by_lambda_and_keeps_a_reference_only_where_both_had_one():
    clip, geo, valid, y = _batch()
    m = mix_batch(clip, geo, valid, y, 0.4, np.random.default_rng(1))
    perm = np.random.default_rng(1)
    perm.beta(0.4, 0.4)
    perm = torch.from_numpy(perm.permutation(len(y)))
    assert torch.allclose(m.clip, m.lam * clip + (1 - m.lam) * clip[perm])
    assert torch.allclose(m.geo, m.lam * geo + (1 - m.lam) * geo[perm])
    assert torch.equal(m.y_a, y) and torch.equal(m.y_b, y[perm])
    assert torch.equal(m.valid, torch.minimum(valid, valid[perm]))
    assert m.valid[2] == 0 and m.valid[int(torch.nonzero(perm == 2))] == 0


def test_the_blended_loss_is_the_lambda_mix_of_the_loss_for_either_label():
    torch.manual_seed(0)
    model = create_model("agn3d_c3d", num_classes=7, size=16, clip_input="lbp+gray_delta",
                         app={"widths": (4, 8, 8, 8), "hidden": 16}, geo={"width": 4, "hidden": 16}).train()
    clip, geo, valid, y = _batch()
    m = mix_batch(clip, geo, valid, y, 0.4, np.random.default_rng(2))
    out = model(m.clip, m.geo, m.valid, target=m.y_a)
    loss, parts = mixup_loss(model, out, m, lambda o, t, v: agn_loss(o, t, v))
    # by hand: the forward pass with each label's pairs, the loss against that label
    loss_a, _ = agn_loss(out, m.y_a, m.valid)
    model_out_b = model.true_class_pairs(out.all_pairs, m.y_b)
    out.train_pair_logits, out.train_pair_target = model_out_b
    loss_b, _ = agn_loss(out, m.y_b, m.valid)
    assert m.lam < 1.0 and not torch.equal(m.y_a, m.y_b)
    assert torch.allclose(loss, m.lam * loss_a + (1 - m.lam) * loss_b)
    assert set(parts) == {"l1", "l2", "l3"}
    loss.backward()  # one graph for both labels
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
