"""The pipeline's inputs and output conversion: :func:`load_image` (path, PIL image, array or
tensor -> an ``(H, W, 3)`` float tensor), the keypoints loader, :func:`to_uint8` (what is
saved) and :class:`PipelineError` for bad pipeline input or settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import RefSDError

__all__ = ["PipelineError", "load_image", "to_uint8"]


class PipelineError(RefSDError):
    """Bad pipeline input or settings."""


def load_image(image: Any) -> torch.Tensor:
    """An ``(H, W, 3)`` float32 tensor in 0..1 (CPU) from a path, a PIL image, a uint8/float
    array or tensor. Files are decoded with Pillow, EXIF orientation applied (as ComfyUI's
    LoadImage does), alpha dropped. Raises :class:`PipelineError` for unreadable files."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise PipelineError(f"image {path} does not exist")
        try:
            with Image.open(path) as im:
                im.load()
                image = ImageOps.exif_transpose(im).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise PipelineError(f"{path.name}: not a readable image ({type(e).__name__}: {e}); the file is "
                                "corrupt or not an image") from e
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            image = torch.from_numpy(np.array(image, copy=True)).float() / 255
        else:
            image = torch.from_numpy(np.array(image, dtype=np.float32, copy=True))
    if not isinstance(image, torch.Tensor):
        raise PipelineError(f"unsupported image type {type(image).__name__}; pass a path, PIL image, array or tensor")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[-1] != 3:
        raise PipelineError(f"image must be (H, W, 3), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float() / 255
    return image.detach().float().cpu().clamp(0, 1)


def _load_keypoints(keypoints: Any):
    from ..keypoints import load_pose_keypoint_file, validate_pose_keypoint

    if isinstance(keypoints, (str, Path)):
        return load_pose_keypoint_file(keypoints)
    return validate_pose_keypoint(keypoints)


def to_uint8(image: torch.Tensor):
    """``(H, W, 3)`` 0..1 -> numpy uint8 (round to nearest; an input pixel k/255 stays k)."""
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
