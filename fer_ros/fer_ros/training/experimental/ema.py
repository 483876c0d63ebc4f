"""An exponential moving average (EMA) of a model's weights, kept beside the model during training.

After optimiser step t, the copy holds the weighted mean of the weights after steps 1 .. t, those of step s
weighing decay ** (t - s): every floating-point parameter and buffer (BatchNorm's running mean and variance too)
moves the fraction (1 - decay) / (1 - decay ** t) of the way to the trained model's. The mean is normalised, so the
random initial weights never count (the first update copies the model), and about 1 / (1 - decay) recent steps
carry most of the weight. Integer buffers (BatchNorm's batch counter) are copied. The copy is evaluated and
exported in the model's place; it never trains itself.

    ema = WeightEMA(model, decay=0.995)
    ...; optimizer.step(); ema.update(model)
    evaluate(ema.module)
"""
from __future__ import annotations

import copy

import torch


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be above 0 and below 1, got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def step_weight(self) -> float:
        """The fraction of the way the next update moves the average towards the model."""
        t = self.updates + 1
        return (1.0 - self.decay) / (1.0 - self.decay ** t)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        w = self.step_weight()
        mine = dict(self.module.state_dict())
        for name, value in model.state_dict().items():
            target = mine[name]
            if torch.is_floating_point(target):
                target.lerp_(value.detach().to(target.device), w)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
