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


def test_class_weights_weigh_every_term_by_the_true_class():
    """With class_weight, L1 and L3 are F.cross_entropy's weighted means and each sample's L2 pair terms count with
    its true class's weight; all-ones weights give the unweighted loss."""
    target, valid = torch.tensor([0, 2, 2, 1]), torch.tensor([1.0, 1.0, 0.0, 1.0])
    l1, out = _random_training_output(2, target, valid)
    plain, _ = agn_loss(out, target, valid)
    same, _ = agn_loss(out, target, valid, class_weight=torch.ones(K))
    assert same.item() == pytest.approx(plain.item(), rel=1e-6)
    w = torch.tensor([1.0, 3.0, 0.5, 1.0, 1.0])
    loss, parts = agn_loss(out, target, valid, class_weight=w)
    per_sample_l2 = F.cross_entropy(out.train_pair_logits.reshape(-1, 2), out.train_pair_target.reshape(-1),
                                    reduction="none").view(4, K - 1).mean(1)
    keep = valid > 0.5
    l2 = (per_sample_l2[keep] * w[target[keep]]).sum() / w[target[keep]].sum()
    expected = F.cross_entropy(l1, target, weight=w) + l2 + F.cross_entropy(out.l3, target, weight=w)
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_logit_offset_shifts_every_logit_in_the_loss_only():
    """logit_offset o: L1 and L3 are the cross-entropies of l1 + o and l3 + o, and each 2-way pair term (a, b) of
    [l_a + o_a, l_b + o_b]; an offset equal for all classes changes nothing, and the outputs are untouched."""
    target, valid = torch.tensor([0, 2, 4, 1]), torch.tensor([1.0, 1.0, 0.0, 1.0])
    l1, out = _random_training_output(4, target, valid)
    plain, _ = agn_loss(out, target, valid)
    flat, _ = agn_loss(out, target, valid, logit_offset=torch.full((K,), -1.7))
    assert flat.item() == pytest.approx(plain.item(), rel=1e-6)
    o = torch.tensor([-0.2, -2.5, -0.9, -1.3, -0.4])
    loss, parts = agn_loss(out, target, valid, logit_offset=o)
    table = {p: i for i, p in enumerate(pairs(K))}
    terms = []
    for i, t in enumerate(target.tolist()):
        if valid[i] < 0.5:
            continue
        for c in range(K):
            if c == t:
                continue
            a, b = min(t, c), max(t, c)
            logits = out.all_pairs[i, table[(a, b)]] + o[[a, b]]
            terms.append(F.cross_entropy(logits[None], torch.tensor([int(t == b)])))
    l2 = torch.stack(terms).mean()
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)
    expected = F.cross_entropy(l1 + o, target) + l2 + F.cross_entropy(out.l3 + o, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(out.l1, l1)
    # the top-2 pair form (a forward pass without target) takes the offsets of its two classes
    top2 = _model(l1, out.all_pairs)(torch.zeros(4, 1, 3, 8, 8), torch.zeros(4, 2, 8, 8), valid)
    _, p2 = agn_loss(top2, target, valid, logit_offset=o)
    in_pair = (top2.pair_classes == target[:, None])
    mask = in_pair.any(1) & (valid > 0.5)
    assert mask.sum() == 2
    want = F.cross_entropy(top2.pair_logits[mask] + o[top2.pair_classes[mask]], in_pair[mask][:, 1].long())
    assert p2["l2"] == pytest.approx(want.item(), rel=1e-5)


def test_per_sample_logit_offsets_apply_to_their_own_sample():
    """logit_offset (B, K): each sample's terms take its own row; a zero row is that sample's plain loss, in
    every term and in both pair forms."""
    target, valid = torch.tensor([0, 2, 4, 1]), torch.tensor([1.0, 1.0, 0.0, 1.0])
    l1, out = _random_training_output(4, target, valid)
    o = torch.tensor([-0.2, -2.5, -0.9, -1.3, -0.4])
    rows = torch.stack([o, torch.zeros(K), o, 0.5 * o])
    top2 = _model(l1, out.all_pairs)(torch.zeros(4, 1, 3, 8, 8), torch.zeros(4, 2, 8, 8), valid)
    for form in (out, top2):
        _, same = agn_loss(form, target, valid, logit_offset=o.expand(4, K))
        _, shared = agn_loss(form, target, valid, logit_offset=o)
        assert same == pytest.approx(shared, rel=1e-6)
        # different rows in one batch: L1 and L3 are the per-sample cross-entropies, each with its own row
        _, mixed = agn_loss(form, target, valid, logit_offset=rows)
        l1_terms = F.cross_entropy(form.l1 + rows, target, reduction="none")
        assert mixed["l1"] == pytest.approx(l1_terms.mean().item(), rel=1e-5)
        l3_terms = F.cross_entropy(form.l3 + rows, target, reduction="none")
        assert mixed["l3"] == pytest.approx(l3_terms.mean().item(), rel=1e-5)
        assert mixed["l1"] != pytest.approx(shared["l1"], rel=1e-3)
    # pair terms, training form: every pair holding a valid sample's class, with that sample's row
    _, p1 = agn_loss(out, target, valid, logit_offset=rows)
    table = {p: i for i, p in enumerate(pairs(K))}
    terms = [F.cross_entropy((out.all_pairs[i, table[(min(t, c), max(t, c))]]
                              + rows[i, [min(t, c), max(t, c)]])[None], torch.tensor([int(t > c)]))
             for i, t in enumerate(target.tolist()) if valid[i] > 0.5 for c in range(K) if c != t]
    assert p1["l2"] == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    # pair terms, top-2 form: samples 1 (row zero) and 3 (row 0.5 o) are the valid ones whose pair holds their class
    _, p2 = agn_loss(top2, target, valid, logit_offset=rows)
    in_pair = (top2.pair_classes == target[:, None])
    mask = in_pair.any(1) & (valid > 0.5)
    assert mask.tolist() == [False, True, False, True]
    want = F.cross_entropy(top2.pair_logits[mask] + rows[mask].gather(1, top2.pair_classes[mask]),
                           in_pair[mask][:, 1].long())
    assert p2["l2"] == pytest.approx(want.item(), rel=1e-5)


def test_label_smoothing_applies_to_every_term():
    """label_smoothing is F.cross_entropy's in L1, L3 and each 2-way pair term; 0 gives the plain loss."""
    target, valid = torch.tensor([0, 2, 4, 1]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    l1, out = _random_training_output(3, target, valid)
    plain, _ = agn_loss(out, target, valid)
    zero, _ = agn_loss(out, target, valid, label_smoothing=0.0)
    assert zero.item() == plain.item()
    eps = 0.2
    loss, parts = agn_loss(out, target, valid, label_smoothing=eps)
    keep = valid > 0.5
    pair_logp = F.log_softmax(out.train_pair_logits[keep], dim=-1)  # (n, K-1, 2)
    pair_t = F.one_hot(out.train_pair_target[keep], 2).float() * (1 - eps) + eps / 2
    l2 = -(pair_t * pair_logp).sum(-1).mean()
    soft = F.one_hot(target, K).float() * (1 - eps) + eps / K
    expected = (-(soft * F.log_softmax(l1, 1)).sum(1).mean() + l2 - (soft * F.log_softmax(out.l3, 1)).sum(1).mean())
    assert parts["l2"] == pytest.approx(l2.item(), rel=1e-5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() != pytest.approx(plain.item(), rel=1e-3)


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
    clip, geo, valid = torch.rand(4, 1, 3, 32, 32), torch.rand(4, 2, 64, 64), torch.ones(4)
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
    clip, geo, valid = _lbp_clip(3), torch.randn(3, 2, 64, 64), torch.ones(3)
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
    clip, geo = _lbp_clip(2), torch.randn(2, 2, 64, 64)
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


def test_a_two_channel_model_predicts_the_same_for_a_face_and_its_mirror_image():
    from fer_ros.nets.flip import flip_clip, flip_geo
    from fer_ros.nets.registry import create_model
    torch.manual_seed(0)
    model = create_model("agn3d_c3d", num_classes=K, size=32, flip_tta=True, clip_input="lbp+gray_delta",
                         app={"widths": (4, 8, 8, 8), "hidden": 16}, geo={"width": 4, "hidden": 16}).eval()
    clip = torch.cat([_lbp_clip(3), torch.rand(3, 1, 3, 32, 32) * 2 - 1], dim=1)
    geo, valid = torch.randn(3, 2, 64, 64), torch.ones(3)
    out = model(clip, geo, valid)
    mirrored = model(flip_clip(clip, model.clip_kinds), flip_geo(geo), valid)
    torch.testing.assert_close(mirrored.probs, out.probs, atol=1e-5, rtol=1e-4)


def test_joined_members_keep_their_buffers_on_the_members_device():
    from fer_ros.nets.ensemble import join_members
    members = [_tta_model().to("meta"), _tta_model().to("meta")]
    joined = join_members(members)
    assert joined.pair_table.device.type == "meta"
    assert all(p.device.type == "meta" for p in joined.parameters())
    assert joined.clip_kinds == members[0].clip_kinds
