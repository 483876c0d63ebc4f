"""Training-only auxiliary task: the appearance network's trunk also regresses the face blendshapes that the
node's landmarker (MediaPipe's FaceLandmarker) measures on the peak frame, and their change from the neutral
reference.

The blendshapes come from a model trained on far more faces than any expression dataset holds (brow raise and
lowering, lid widening, lip-corner pull and stretch, nose wrinkle, ...): asking the trunk to predict them steers
its features towards those facial actions. The head is a single linear layer on the features the appearance
classifier reads (tapped with a forward pre-hook on `appearance.head`, so the networks stay as they are); it is
not part of the model, and nothing of it is exported: inference is unchanged. `AuxTargets` gives each training
sample its target: the peak's scores and their change from the reference, standardised over the training images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fer_ros.landmark_scheme import blendshape_mirror
from fer_ros.training.data.datasets import DatasetError

if TYPE_CHECKING:
    from fer_ros.training.data.samples import Samples


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


@dataclass
class AuxTargets:
    """What SequenceSet needs to give each training sample its auxiliary blendshape target: the scores per
    image, the mirror table, and the standardisation (mean, std per blendshape over the training images)."""
    scores: np.ndarray
    mirror: list[int]
    mean: np.ndarray
    std: np.ndarray

    @property
    def size(self) -> int:
        return 2 * self.scores.shape[1]  # the peak's scores and their change from the neutral reference

    @staticmethod
    def of(samples: Samples, train_idx: np.ndarray) -> AuxTargets:
        if samples.blendshapes is None or samples.blendshapes.shape[1] == 0:
            raise DatasetError("--aux-blendshapes needs the landmarker's blendshapes, and the image cache has none; "
                               "use a landmarker model with blendshapes (the shipped face_landmarker.task has them) "
                               "or train without --aux-blendshapes")
        neutral = samples.neutral[np.asarray(train_idx)]
        images = np.unique(np.concatenate([samples.peaks[np.asarray(train_idx)].ravel(), neutral[neutral >= 0]]))
        sc = samples.blendshapes[images]
        return AuxTargets(samples.blendshapes, blendshape_mirror(samples.blendshape_names),
                          sc.mean(axis=0), sc.std(axis=0) + 1e-3)

    def target(self, peak: int, reference: int, flipped: bool) -> np.ndarray:
        pk, ref = self.scores[peak], self.scores[reference]
        if flipped:
            pk, ref = pk[self.mirror], ref[self.mirror]
        return np.concatenate([(pk - self.mean) / self.std, (pk - ref) / self.std]).astype(np.float32)
