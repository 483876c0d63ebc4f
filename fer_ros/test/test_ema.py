"""The weights' moving average (fer_ros/training/experimental/ema.py) against the same average computed by hand."""
from __future__ import annotations

import pytest
import torch

from fer_ros.training.experimental.ema import WeightEMA


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_the_average_is_the_normalised_exponentially_weighted_mean_of_the_steps():
    net = _net()
    ema = WeightEMA(net, decay=0.9)
    trajectory = []
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for t in range(30):
        net.train()
        loss = net(torch.randn(8, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
        trajectory.append({k: v.clone() for k, v in net.state_dict().items()})
    # by hand: the weights after each step, the latest weighing most, the initial weights not at all
    w = torch.tensor([0.9 ** (len(trajectory) - 1 - s) for s in range(len(trajectory))], dtype=torch.float64)
    w /= w.sum()
    got = ema.module.state_dict()
    for k in got:
        if got[k].is_floating_point():
            mean = sum(float(w[s]) * trajectory[s][k].double() for s in range(len(trajectory)))
            assert torch.allclose(got[k].double(), mean, atol=1e-5), k
    assert int(got["1.num_batches_tracked"]) == 30  # counters are copied, not averaged
    assert not torch.allclose(got["0.weight"], net.state_dict()["0.weight"])  # an average, not the model
    assert ema.updates == 30


def test_the_average_never_trains_and_leaves_the_model_alone():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ema = WeightEMA(net, decay=0.5)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(1.0)
    ema.update(net)  # the first update copies the model: nothing of the copy's own weights is left
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in ema.module.state_dict().items())
    assert not ema.module.training


def test_state_round_trip_and_bad_decay():
    net = _net()
    ema = WeightEMA(net, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            net[0].weight.add_(0.1)
        ema.update(net)
    other = WeightEMA(_net(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    assert all(torch.equal(a, b) for a, b in zip(other.module.state_dict().values(),
                                                  ema.module.state_dict().values()))
    for bad in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match="above 0 and below 1"):
            WeightEMA(net, bad)
