"""nst-video: neural style transfer for videos, frame folders and images (Gatys et al. 2016, with
Ruder et al. 2016's optical-flow temporal consistency).

Conventions, followed in every module:
- A frame is an (H, W, 3) uint8 RGB numpy array; an image tensor is (1, 3, H, W) float32 RGB in [0, 1].
- Sizes follow the thing they size: a frame or file size is (width, height), as ffmpeg, OpenCV and image
  headers give it (media, probe, video: `size`); a tensor size is (height, width), as torch gives it
  (optimise, losses, Plan: `size` of a scale, `hw`); Config.size is the longest side in px.
- Every progress event is a dataclass of `events`; every finished file appears through `files.atomic`.
- One factory turns a Config into VGG19 and its objective (`losses.build_objective`).
"""
import importlib

__version__ = "0.1.0"

# The modules that load torch, imported on first use as `pipeline.NAME` (PEP 562), so that the commands that never
# run the model (status, its page and --serve, config, --help) start without it.
HEAVY = ("batch", "bench", "chunks_bench", "evaluate", "reconstruct", "runtime", "temporal_bench", "vgg", "video")


def __getattr__(name: str):
    if name in HEAVY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
