"""The inference form of a trained model: the same function with its layers arranged for inference runtimes.

`agn3d_res`'s stem is two Conv3d over a clip of T frames: a 3x3x3 one that keeps the T frames (time padded by
one), a 1x2x2 max-pool, and one whose kernel spans the whole clip in time (T -> 1). A Conv3d over T frames is a
Conv2d over C * T channels (channel c * T + t), whose weight is zero where a frame lies outside the time window of
an output frame; time then lives in the channels, the pool is a 2D pool, and the whole stem runs as 2D
convolutions with BatchNorm folded in. Runtimes have fast 2D convolutions (onnxruntime's blocked layout) and slow
3D ones: the shipped model's graph ran 12-15% faster at batch 1 and 14-17% at batch 8 (2-core Xeon, 2 threads).

`inference_form(model)` returns a copy with such stems replaced and leaves the model itself alone; the ONNX export
uses it. Training and model.pt keep the 3D layers, the paper's form.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from fer_ros.nets.appearance import C3DRes


def fold_batchnorm(conv: nn.Conv2d | nn.Conv3d, bn: nn.BatchNorm2d | nn.BatchNorm3d | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the convolution followed by the (eval-mode) BatchNorm, as one convolution, in the
    convolution's dtype and on its device."""
    weight = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale.view(-1, *[1] * (weight.dim() - 1))
        bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    return weight, bias


def conv3d_as_conv2d(conv: nn.Conv3d, bn: nn.BatchNorm3d | None, frames: int) -> tuple[nn.Conv2d, int]:
    """The Conv3d (+ BatchNorm) over `frames` frames as a Conv2d over channels laid out c * frames + t, its output
    laid out o * frames_out + t, in the Conv3d's dtype and on its device. Returns (conv2d, frames_out). Stride 1
    and dilation 1 in time only."""
    if conv.stride[0] != 1 or conv.dilation[0] != 1 or conv.groups != 1:
        raise ValueError(f"{conv}: only stride 1, dilation 1 in time and no groups fold into a Conv2d")
    if isinstance(conv.padding, str):
        raise ValueError(f"{conv}: give the padding as numbers")
    weight, bias = fold_batchnorm(conv, bn)
    cout, cin, kt, kh, kw = weight.shape
    pad_t = conv.padding[0]
    frames_out = frames + 2 * pad_t - kt + 1
    if frames_out < 1:
        raise ValueError(f"{conv}: a time kernel of {kt} does not fit {frames} frames")
    folded = weight.new_zeros(cout, frames_out, cin, frames, kh, kw)
    for t_out in range(frames_out):
        for k in range(kt):
            t_in = t_out - pad_t + k
            if 0 <= t_in < frames:
                folded[:, t_out, :, t_in] = weight[:, :, k]
    conv2d = nn.Conv2d(cin * frames, cout * frames_out, (kh, kw), stride=conv.stride[1:],
                       padding=conv.padding[1:], dilation=conv.dilation[1:], bias=True, device=weight.device,
                       dtype=weight.dtype)
    conv2d.weight.data.copy_(folded.reshape(cout * frames_out, cin * frames, kh, kw))
    conv2d.bias.data.copy_(bias.repeat_interleave(frames_out))
    return conv2d, frames_out


class StemAs2d(nn.Module):
    """C3DRes's stem with time folded into the channels: (B, C, T, H, W) -> (B, C2, 1, H / 2, W / 2), the same
    values as the 3D stem in eval mode.

    The first convolution's O * T output channels are padded with zero channels to a multiple of
    `channel_multiple`: onnxruntime on x86 keeps the max-pool between the two convolutions in its blocked layout
    only when the channels fill whole blocks (16 floats with AVX-512, 8 with AVX2), else it reorders the tensor out
    of that layout and back. For the shipped model (72 -> 80 channels) that made the graph about 8% faster at batch
    1 and 8 on a 2-core Xeon, for 11% more arithmetic in that one convolution."""

    def __init__(self, stem: nn.Sequential, frames: int, channel_multiple: int = 16) -> None:
        super().__init__()
        first, pool, second = stem
        if (tuple(pool.kernel_size), tuple(pool.stride)) != ((1, 2, 2), (1, 2, 2)) or pool.padding not in (0, (0,) * 3):
            raise ValueError(f"{pool}: only a 1x2x2 max-pool folds into a 2D pool")
        conv1, t1 = conv3d_as_conv2d(first[0], _norm(first), frames)
        conv2, t2 = conv3d_as_conv2d(second[0], _norm(second), t1)
        if t2 != 1:
            raise ValueError(f"the stem's second convolution leaves {t2} frames, not 1")
        conv1, conv2 = _pad_channels(conv1, conv2, -(-conv1.out_channels // channel_multiple) * channel_multiple)
        self.body = nn.Sequential(conv1, nn.ReLU(inplace=True), nn.MaxPool2d(2), conv2, nn.ReLU(inplace=True))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        return self.body(clip.reshape(b, c * t, h, w)).unsqueeze(2)


def _pad_channels(first: nn.Conv2d, second: nn.Conv2d, channels: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    """first with zero output channels appended up to `channels` (each 0 after the ReLU and the pool), second with
    zero input weights for them: the same function, in the convolutions' dtype and on their device."""
    extra = channels - first.out_channels
    if extra <= 0:
        return first, second
    wide = nn.Conv2d(first.in_channels, channels, first.kernel_size, first.stride, first.padding, first.dilation,
                     device=first.weight.device, dtype=first.weight.dtype)
    wide.weight.data = torch.cat([first.weight.data, first.weight.data.new_zeros(extra, *first.weight.shape[1:])])
    wide.bias.data = torch.cat([first.bias.data, first.bias.data.new_zeros(extra)])
    after = nn.Conv2d(channels, second.out_channels, second.kernel_size, second.stride, second.padding,
                      second.dilation, device=second.weight.device, dtype=second.weight.dtype)
    w = second.weight.data
    after.weight.data = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
    after.bias.data = second.bias.data.clone()
    return wide, after


def _norm(block: nn.Sequential) -> nn.BatchNorm3d | None:
    return next((m for m in block if isinstance(m, nn.BatchNorm3d)), None)


def inference_form(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every C3DRes stem folded into 2D convolutions (the same outputs within
    float rounding); a model without one comes back as an unchanged copy."""
    out = copy.deepcopy(model).eval()
    for module in out.modules():
        if isinstance(module, C3DRes):
            module.stem = StemAs2d(module.stem, module.frames)
    return out
