"""Sharpness-aware steps (fer_ros.training.experimental.sam): rho 0 is a plain step, rho > 0 steps with the gradient
taken at the weights moved uphill and then put back, and BatchNorm statistics count the first pass only."""
from __future__ import annotations

import pytest
import torch

from fer_ros.training.experimental.sam import frozen_batchnorm_stats, sam_step


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)


def _loss_fn(net, x, y):
    return lambda: torch.nn.functional.mse_loss(net(x), y)


def test_rho_zero_is_a_plain_step():
    x, y = _batch()
    a, b = _net(), _net()
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=0.1), torch.optim.Adam(b.parameters(), lr=0.1)
    loss_a = sam_step(opt_a, _loss_fn(a, x, y), 0.0, [a])
    opt_b.zero_grad()
    loss_b = _loss_fn(b, x, y)()
    loss_b.backward()
    opt_b.step()
    assert loss_a.item() == loss_b.item()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_the_step_uses_the_gradient_at_the_moved_weights():
    """Plain SGD makes the step easy to write by hand: w - lr * grad(w + rho g / ||g||)."""
    x, y = _batch()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    w0 = [p.detach().clone() for p in net.parameters()]
    rho, lr = 0.5, 0.1

    def loss_at(ws):
        return torch.nn.functional.mse_loss(torch.nn.functional.linear(x, ws[0], ws[1]), y)

    ws = [w.clone().requires_grad_(True) for w in w0]
    g = torch.autograd.grad(loss_at(ws), ws)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    moved = [(w + rho * gi / norm).requires_grad_(True) for w, gi in zip(w0, g)]
    g_moved = torch.autograd.grad(loss_at(moved), moved)
    expected = [w - lr * gi for w, gi in zip(w0, g_moved)]

    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss = sam_step(opt, lambda: loss_at(list(net.parameters())), rho)
    assert loss.item() == pytest.approx(loss_at(w0).item())  # the loss reported is the unmoved one
    for p, e in zip(net.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    # and the step differs from a plain one: the test would see a SAM step that forgot to move the weights
    plain = [w - lr * gi for w, gi in zip(w0, g)]
    assert any(not torch.allclose(p.detach(), q) for p, q in zip(net.parameters(), plain))


def test_batchnorm_statistics_count_the_first_pass_only():
    x, y = _batch()
    a, b = _net(), _net()
    sam_step(torch.optim.SGD(a.parameters(), lr=0.1), _loss_fn(a, x, y), 0.05, [a])
    sam_step(torch.optim.SGD(b.parameters(), lr=0.1), _loss_fn(b, x, y), 0.0, [b])
    bn_a, bn_b = a[1], b[1]
    assert torch.equal(bn_a.running_mean, bn_b.running_mean)
    assert torch.equal(bn_a.running_var, bn_b.running_var)
    assert int(bn_a.num_batches_tracked) == 1
    assert bn_a.momentum == bn_b.momentum == 0.1  # restored after the second pass


def test_frozen_batchnorm_still_normalises_with_the_batch():
    x, _ = _batch()
    net = _net()
    net.train()
    before = net[1].running_mean.clone()
    with frozen_batchnorm_stats([net]):
        h = net[1](net[0](x))
    assert torch.equal(net[1].running_mean, before)
    torch.testing.assert_close(h.mean(0), net[1].bias.detach().expand(4), atol=1e-5, rtol=0)


def test_a_negative_rho_is_refused():
    net = _net()
    x, y = _batch()
    with pytest.raises(ValueError, match="rho must be 0 or more"):
        sam_step(torch.optim.SGD(net.parameters(), lr=0.1), _loss_fn(net, x, y), -0.1)
