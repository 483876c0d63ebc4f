"""3DAGN fusion: top-2 pair selection, placement of the pair logits at their two classes, l3 = l1 + l2, the loss
L1 + L2 + L3, and the training pairs (the true class against every other class)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_ros.nets.agn import AGN3D, ProbsOnly, agn_loss
from fer_ros.nets.geometric import pairs

K = 5


class FixedLogits(nn.Module):
    """Returns the rows it was given, whatever the input (to steer the fusion by hand)."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, x):
        return self.rows


def _model(l1: torch.Tensor, pair_logits: torch.Tensor) -> AGN3D:
    return AGN3D(FixedLogits(l1), FixedLogits(pair_logits), K)


def _inputs(b):
    return torch.zeros(b, 1, 3, 8, 8), torch.zeros(b, 2, 8, 8), torch.ones(b)


def test_pairs_cover_every_unordered_pair_once():
    p = pairs(K)
    assert len(p) == K * (K - 1) // 2 and len(set(p)) == len(p) and all(i < j for i, j in p)


def test_top2_picks_the_pair_and_places_its_logits():
    l1 = torch.tensor([[0.1, 3.0, 0.2, 2.0, -1.0],    # top-2: classes 1 and 3
                       [5.0, 0.0, 0.0, 0.0, 4.0]])    # top-2: classes 0 and 4
    all_pairs = torch.arange(len(pairs(K)) * 2, dtype=torch.float32).view(1, -1, 2).repeat(2, 1, 1)
    out = _model(l1, all_pairs)(*_inputs(2))
    assert out.pair_classes.tolist() == [[1, 3], [0, 4]]
    p13, p04 = pairs(K).index((1, 3)), pairs(K).index((0, 4))
    assert out.pair_index.tolist() == [p13, p04]
    expected_l2 = torch.zeros(2, K)
    expected_l2[0, 1], expected_l2[0, 3] = all_pairs[0, p13, 0], all_pairs[0, p13, 1]
    expected_l2[1, 0], expected_l2[1, 4] = all_pairs[1, p04, 0], all_pairs[1, p04, 1]
    torch.testing.assert_close(out.l2, expected_l2)
    torch.testing.assert_close(out.l3, l1 + expected_l2)
    torch.testing.assert_close(out.probs, torch.softmax(l1 + expected_l2, dim=1))
    torch.testing.assert_close(ProbsOnly(_model(l1, all_pairs))(*_inputs(2)), out.probs)


def test_without_neutral_reference_the_geometric_part_is_zero():
    l1 = torch.randn(3, K)
    all_pairs = torch.randn(3, len(pairs(K)), 2)
    clip, geo, _ = _inputs(3)
    out = _model(l1, all_pairs)(clip, geo, torch.tensor([0.0, 1.0, 0.0]))
    assert torch.all(out.l2[0] == 0) and torch.all(out.l2[2] == 0) and torch.any(out.l2[1] != 0)
    torch.testing.assert_close(out.probs[0], torch.softmax(l1[0], 0))


def test_the_pair_decision_can_overturn_the_appearance_ranking():
    l1 = torch.tensor([[0.0, 2.0, 0.0, 1.9, 0.0]])  # appearance: class 1 just ahead of 3
    all_pairs = torch.zeros(1, len(pairs(K)), 2)
    all_pairs[0, pairs(K).index((1, 3))] = torch.tensor([-2.0, 2.0])  # the pair network says 3
    out = _model(l1, all_pairs)(*_inputs(1))
    assert out.probs.argmax(1).item() == 3


def test_loss_is_the_sum_of_the_three_cross_entropies():
    torch.manual_seed(0)
    l1 = torch.randn(4, K)
    all_pairs = torch.randn(4, len(pairs(K)), 2)
    target = torch.tensor([0, 2, 4, 1])
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0])
    model = _model(l1, all_pairs)
    out = model(torch.zeros(4, 1, 3, 8, 8), torch.zeros(4, 2, 8, 8), valid, target=target)
    loss, parts = agn_loss(out, target, valid)
    # L2: every pair holding the true class, as separate 2-way models trained on their two classes would be
    l2_terms = []
    for b in range(4):
        if valid[b] == 0:
            continue
        for other in range(K):
            if other == target[b]:
                continue
            a, c = sorted([int(target[b]), other])
            logits = all_pairs[b, pairs(K).index((a, c))]
            l2_terms.append(F.cross_entropy(logits[None], torch.tensor([0 if target[b] == a else 1])))
    assert len(l2_terms) == 3 * (K - 1)
    l2 = torch.stack(l2_terms).mean()
    l3 = F.cross_entropy(out.l3, target)
    expected = F.cross_entropy(l1, target) + l2 + l3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)


def _random_training_output(seed: int, target: torch.Tensor, valid: torch.Tensor):
    """(l1, the training forward pass's AGNOutput) for random appearance and pair logits."""
    torch.manual_seed(seed)
    n = len(target)
    l1, all_pairs = torch.randn(n, K), torch.randn(n, len(pairs(K)), 2)
    return l1, _model(l1, all_pairs)(torch.zeros(n, 1, 3, 8, 8), torch.zeros(n, 2, 8, 8), valid, target=target)


def test_soft_targets_replace_the_label_in_l1_and_l3_only():
    """soft_target (B, K): L1 and L3 are the cross-entropies against the distribution; L2 still decides the pairs of
    the true class. A one-hot distribution is the plain loss."""
    target = torch.tensor([0, 2, 4, 1])
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0])
    l1, out = _random_training_output(3, target, valid)
    plain, plain_parts = agn_loss(out, target, valid)
    one_hot, _ = agn_loss(out, target, valid, soft_target=F.one_hot(target, K).float())
    assert one_hot.item() == pytest.approx(plain.item(), rel=1e-6)
    soft = torch.softmax(torch.randn(4, K), dim=1)
    loss, parts = agn_loss(out, target, valid, soft_target=soft)
    assert parts["l1"] == pytest.approx(F.cross_entropy(l1, soft).item(), rel=1e-5)
    assert parts["l3"] == pytest.approx(F.cross_entropy(out.l3, soft).item(), rel=1e-5)
    assert parts["l2"] == pytest.approx(plain_parts["l2"], rel=1e-6)


def test_the_pair_mask_keeps_samples_out_of_l2_only():
    """pair_mask 0 (a sample compared with itself: no change to learn the pair decisions from) removes that
    sample's pair terms from L2 and leaves L1 and L3 alone; a mask of ones is the plain loss."""
    target = torch.tensor([0, 2, 4, 1])
    valid = torch.ones(4)
    _, out = _random_training_output(4, target, valid)
    plain, plain_parts = agn_loss(out, target, valid)
    ones, _ = agn_loss(out, target, valid, pair_mask=torch.ones(4))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    _, masked = agn_loss(out, target, valid, pair_mask=torch.tensor([1.0, 0.0, 0.0, 1.0]))
    only = torch.tensor([1.0, 0.0, 0.0, 1.0])
    _, subset = agn_loss(out, target, valid * only)  # the same as no reference for the pair terms
    assert masked["l2"] == pytest.approx(subset["l2"], rel=1e-6) and masked["l2"] != pytest.approx(plain_parts["l2"])
    assert masked["l1"] == plain_parts["l1"] and masked["l3"] == plain_parts["l3"]
    _, none = agn_loss(out, target, valid, pair_mask=torch.zeros(4))
    assert none["l2"] == 0.0


def test_the_fused_output_never_sees_the_label():
    torch.manual_seed(1)
    l1, all_pairs = torch.randn(6, K), torch.randn(6, len(pairs(K)), 2)
    model = _model(l1, all_pairs)
    a = model(*_inputs(6))
    b = model(*_inputs(6), target=torch.tensor([0, 1, 2, 3, 4, 0]))
    torch.testing.assert_close(a.l3, b.l3)


def test_gradients_reach_both_networks():
    from fer_ros.nets.registry import create_model
    torch.manual_seed(0)
    model = create_model("agn3d_c3d", num_classes=K, size=32, app={"widths": (4, 8, 8, 8), "hidden": 16},
                         geo={"width": 4, "hidden": 16})
    clip, geo, valid = torch.rand(4, 1, 3, 32, 32), torch.rand(4, 2, 32, 32), torch.ones(4)
    target = torch.tensor([0, 1, 2, 3])
    loss, _ = agn_loss(model(clip, geo, valid, target=target), target, valid)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.appearance.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.geometric.parameters())


def test_training_pairs_are_the_true_class_against_every_other():
    all_pairs = torch.arange(len(pairs(K)) * 2, dtype=torch.float32).view(1, -1, 2).repeat(2, 1, 1)
    model = _model(torch.zeros(2, K), all_pairs)
    logits, tgt = model.true_class_pairs(all_pairs, torch.tensor([0, 3]))
    assert logits.shape == (2, K - 1, 2) and tgt.shape == (2, K - 1)
    # class 0 is the first class of each of its pairs; class 3 is second in (0,3),(1,3),(2,3) and first in (3,4)
    assert tgt.tolist() == [[0, 0, 0, 0], [1, 1, 1, 0]]
    for b, (t, others) in enumerate(((0, [1, 2, 3, 4]), (3, [0, 1, 2, 4]))):
        for n, o in enumerate(others):
            torch.testing.assert_close(logits[b, n], all_pairs[b, pairs(K).index(tuple(sorted((t, o))))])


def test_without_a_target_l2_uses_the_top2_pair_when_it_holds_the_true_class():
    l1 = torch.tensor([[3.0, 2.0, 0.0, 0.0, 0.0],   # top-2 (0, 1), true class 1: in the pair
                       [3.0, 2.0, 0.0, 0.0, 0.0]])  # true class 4: not in the pair, no L2 term
    all_pairs = torch.zeros(2, len(pairs(K)), 2)
    all_pairs[:, pairs(K).index((0, 1))] = torch.tensor([0.5, -0.5])
    model = _model(l1, all_pairs)
    target = torch.tensor([1, 4])
    out = model(*_inputs(2))
    _, parts = agn_loss(out, target, torch.ones(2))
    assert parts["l2"] == pytest.approx(F.cross_entropy(torch.tensor([[0.5, -0.5]]), torch.tensor([1])).item(),
                                        rel=1e-5)


def _tta_model():
    from fer_ros.nets.registry import create_model
    torch.manual_seed(0)
    return create_model("agn3d_c3d", num_classes=K, size=32, flip_tta=True,
                        app={"widths": (4, 8, 8, 8), "hidden": 16}, geo={"width": 4, "hidden": 16})


def _lbp_clip(b, size=32):
    codes = torch.randint(0, 256, (b, 1, 3, size, size)).float()
    return codes / 255.0


def test_flip_tta_averages_the_face_and_its_mirror_image_at_inference():
    from fer_ros.nets.flip import flip_geo, flip_lbp_clip
    model = _tta_model().eval()
    clip, geo, valid = _lbp_clip(3), torch.randn(3, 2, 32, 32), torch.ones(3)
    out = model(clip, geo, valid)
    with torch.no_grad():
        l1 = 0.5 * (model.appearance(clip) + model.appearance(flip_lbp_clip(clip)))
    torch.testing.assert_close(out.l1, l1)
    # so the prediction of a face and of its mirror image are the same
    mirrored = model(flip_lbp_clip(clip), flip_geo(geo), valid)
    torch.testing.assert_close(mirrored.probs, out.probs, atol=1e-5, rtol=1e-4)
    # training sees one view
    model.train()
    torch.manual_seed(1)
    a = model(clip, geo, valid).l1
    torch.manual_seed(1)
    torch.testing.assert_close(a, model.appearance(clip))


def test_flipping_an_lbp_clip_is_the_lbp_of_the_flipped_frames_and_an_involution():
    import numpy as np

    from fer_ros.lbp import lbp
    from fer_ros.nets.flip import flip_geo, flip_lbp_clip
    gray = np.random.default_rng(0).integers(0, 256, (3, 20, 20)).astype(np.uint8)
    clip = torch.from_numpy(np.stack([lbp(g) for g in gray]).astype(np.float32)[None, None] / 255.0)
    flipped = np.stack([lbp(np.ascontiguousarray(g[:, ::-1])) for g in gray]).astype(np.float32)[None, None]
    torch.testing.assert_close(flip_lbp_clip(clip) * 255.0, torch.from_numpy(flipped), atol=1e-3, rtol=0)
    clip, geo = _lbp_clip(2), torch.randn(2, 2, 32, 32)
    torch.testing.assert_close(flip_lbp_clip(flip_lbp_clip(clip)), clip)
    torch.testing.assert_close(flip_geo(flip_geo(geo)), geo)


def test_flipping_a_clip_of_any_input_is_the_clip_of_the_flipped_frames():
    import numpy as np

    from fer_ros.nets.flip import flip_clip
    from fer_ros.preprocess import CLIP_INPUTS, clip_from_gray
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (3, 20, 20)).astype(np.uint8)
    neutral = rng.integers(0, 256, (20, 20)).astype(np.uint8)
    for name, kinds in CLIP_INPUTS.items():
        clip = torch.from_numpy(clip_from_gray(name, gray, neutral))[None]
        mirrored = clip_from_gray(name, np.ascontiguousarray(gray[:, :, ::-1]), np.ascontiguousarray(neutral[:, ::-1]))
        torch.testing.assert_close(flip_clip(clip, kinds)[0], torch.from_numpy(mirrored), atol=1e-5, rtol=0,
                                   msg=name)
        torch.testing.assert_close(flip_clip(flip_clip(clip, kinds), kinds), clip, atol=1e-5, rtol=0, msg=name)


def test_a_model_on_the_shipped_clip_input_predicts_the_same_for_a_face_and_its_mirror_image():
    from fer_ros.nets.flip import flip_clip, flip_geo
    from fer_ros.nets.registry import create_model
    torch.manual_seed(0)
    model = create_model("agn3d_c3d", num_classes=K, size=32, flip_tta=True, clip_input="lbp+gray_norm+delta_norm",
                         app={"widths": (4, 8, 8, 8), "hidden": 16}, geo={"width": 4, "hidden": 16}).eval()
    clip = torch.cat([_lbp_clip(3), torch.rand(3, 2, 3, 32, 32) * 2 - 1], dim=1)
    geo, valid = torch.randn(3, 2, 32, 32), torch.ones(3)
    out = model(clip, geo, valid)
    mirrored = model(flip_clip(clip, model.clip_kinds), flip_geo(geo), valid)
    torch.testing.assert_close(mirrored.probs, out.probs, atol=1e-5, rtol=1e-4)



def test_the_mirror_table_is_a_buffer_of_the_model_not_read_from_the_host(monkeypatch):
    """The LBP mirror table moves with the model (.to(device), .half()), so a forward pass on a GPU copies nothing
    from host memory (which would also stop it from being recorded as a CUDA graph), and it is not saved."""
    from fer_ros.nets import flip
    from fer_ros.nets.registry import create_model
    torch.manual_seed(0)
    model = create_model("agn3d_c3d", num_classes=K, size=32, flip_tta=True, clip_input="lbp+gray_norm+delta_norm",
                         app={"widths": (4, 8, 8, 8), "hidden": 16}, geo={"width": 4, "hidden": 16}).eval()
    assert "mirrored_codes" in dict(model.named_buffers()) and "mirrored_codes" not in model.state_dict()
    clip = torch.cat([_lbp_clip(3), torch.rand(3, 2, 3, 32, 32) * 2 - 1], dim=1)
    geo, valid = torch.randn(3, 2, 32, 32), torch.ones(3)
    expected = model(clip, geo, valid).probs
    monkeypatch.setattr(flip, "MIRRORED_CODES", torch.full((256,), float("nan")))  # only the model's copy is read
    torch.testing.assert_close(model(clip, geo, valid).probs, expected)
    assert model.half().mirrored_codes.dtype == torch.float16
