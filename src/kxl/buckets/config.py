"""The typed `buckets:` config section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kxl.errors import KxlError

CropConvention = Literal["kohya-0.8.7", "correct"]
CacheMode = Literal["pixels", "none", "latents"]
Resample = Literal["box", "lanczos"]


@dataclass(frozen=True)
class BucketsConfig:
    """Aspect-ratio bucketing as sd-scripts v0.8.7 does it (`--resolution`, `--min_bucket_reso`,
    `--max_bucket_reso`, `--bucket_reso_steps`, `--bucket_no_upscale`)."""

    resolution: int
    min_size: int
    max_size: int
    step: int
    no_upscale: bool = False
    # kohya-0.8.7: SDXL crop conditioning as sd-scripts 0.8.7 computes it (issue 1443 defect);
    # correct: the offset of the centre crop actually made, as the SDXL paper defines it.
    crop_convention: CropConvention = "correct"
    # pixels: resized+cropped uint8 images per bucket in safetensors; none: training decodes
    # the image files and applies the recorded resize/crop itself; latents: those pixels' VAE
    # posterior (mean, std) per bucket, encoded once with the base model's VAE.
    cache: CacheMode = "none"
    # Pillow filter for the resize; sd-scripts uses cv2 INTER_AREA (box = area averaging).
    resample: Resample = "box"

    def __post_init__(self) -> None:
        if min(self.resolution, self.min_size, self.max_size, self.step) <= 0:
            raise KxlError("config buckets: resolution, min_size, max_size, step must be > 0")
        # The same two checks sd-scripts' BucketManager asserts.
        if self.max_size < max(self.resolution, self.min_size):
            raise KxlError(
                f"config buckets: max_size {self.max_size} must be >= resolution "
                f"{self.resolution} and >= min_size {self.min_size}; fix the buckets section"
            )
