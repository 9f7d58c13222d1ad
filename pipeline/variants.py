"""What `nst-video bench temporal` runs, as data, so that its --help lists them without loading torch: the clips
(made by clips.py) and the variants, named changes to the settings under test.
"""
from __future__ import annotations

CLIP_NAMES = ("flicker", "zoom", "occluder", "rotation", "light", "long", "sintel")
TUNED = ("flicker", "zoom")   # settings are chosen on these; the others are held out

VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("the defaults", {}),
    "cold": ("every frame cold and independent", {"warm_start": False}),
    "no-temporal": ("flow-warped start, no temporal loss", {"temporal_weight": 0.0}),
}
