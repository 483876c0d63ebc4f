"""Training-only auxiliary task: the appearance network's trunk also regresses the face blendshapes that the
node's landmarker (MediaPipe's FaceLandmarker) measures on the peak frame, and their change from the neutral
reference.

The blendshapes come from a model trained on far more faces than any expression dataset holds (brow raise and
lowering, lid widening, lip-corner pull and stretch, nose wrinkle, ...): asking the trunk to predict them steers
its features towards those facial actions. The head is a single linear layer on the features the appearance
classifier reads (tapped with a forward pre-hook on `appearance.head`, so the networks stay as they are); it is
not part of the model, and nothing of it is exported: inference is unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


class BlendshapeHead(nn.Module):
    """Linear regression of `out_features` targets from the appearance trunk's features.

    Attach with `BlendshapeHead(model.appearance, n)`; after each forward pass of the model, `head()` gives the
    predictions for that pass's samples. `detach()` removes the tap (call it before export)."""

    def __init__(self, appearance: nn.Module, out_features: int) -> None:
        super().__init__()
        head = getattr(appearance, "head", None)
        first = next((m for m in head if isinstance(m, nn.Linear)), None) if isinstance(head, nn.Sequential) else None
        if first is None:
            raise ValueError("the auxiliary blendshape head needs an appearance network whose `head` is an "
                             "nn.Sequential classifier with a Linear layer (as every registered network has)")
        self.linear = nn.Linear(first.in_features, out_features)
        self._features: torch.Tensor | None = None
        self._handle = head.register_forward_pre_hook(self._tap)

    def _tap(self, module: nn.Module, inputs: tuple) -> None:
        self._features = inputs[0]

    def forward(self) -> torch.Tensor:
        if self._features is None:
            raise RuntimeError("BlendshapeHead: run the model forward before asking for the auxiliary output")
        return self.linear(self._features.flatten(1))

    def detach(self) -> None:
        self._handle.remove()
        self._features = None
