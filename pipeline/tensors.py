"""Between frames and tensors: a frame is an (H, W, 3) uint8 RGB array, an image tensor (1, 3, H, W) float32 RGB
in [0, 1]. Used by the frame loop, the optimiser, the losses and the tools alike."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    frame = np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy()  # decoded frames are read-only
    return torch.from_numpy(frame).to(device).permute(2, 0, 1)[None].float().div_(255).contiguous()


def to_frame(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8 RGB (rounded, clamped)."""
    return image[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, H, W) to (H', W'): antialiased bicubic when shrinking, bicubic when enlarging."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] * size[1] < image.shape[-2] * image.shape[-1]
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=shrinking)


def noise_like(reference: torch.Tensor, seed: int) -> torch.Tensor:
    """Uniform white noise in [0, 1], the same for the same seed on every device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(reference.shape, generator=generator).to(reference.device)
