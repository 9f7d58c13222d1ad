"""The drift benchmark's variants (`nst-video bench drift --variants`): named changes to the settings under
test. Data only, so the command's --help lists them without loading torch.
"""
from __future__ import annotations


# Each variant is a set of changes to the settings under test. "ruder" pins the handling of time this project
# shipped before the drift work (Ruder's loss on every pixel, the warp repeated into revealed pixels, a plain
# tolerance stop), so the comparison stays reproducible whatever the defaults become.
HELD = dict(temporal_relax=1.0, quality_slack=1.15)   # before the relaxed temporal weight: held at full weight


DRIFT_VARIANTS = {
    "ruder": ("Ruder's loss, warped fill, plain stop", dict(temporal_detail=1.0, unreliable_init="warped",
                                                            start_warp="bilinear", quality_slack=0.0)),
    "inpaint": ("+ inpainted fill", dict(temporal_detail=1.0, unreliable_init="inpaint", quality_slack=0.0)),
    "earned": ("+ earned stop", dict(temporal_detail=1.0, unreliable_init="inpaint", **HELD)),
    "lowpass": ("low-pass temporal (detail 0), inpaint, earned stop",
                dict(temporal_detail=0.0, unreliable_init="inpaint", **HELD)),
    "detail": ("temporal detail 0.25, inpaint, earned stop",
               dict(temporal_detail=0.25, unreliable_init="inpaint", **HELD)),
    "matched": ("low-pass temporal (detail 0), matched fill, earned stop",
                dict(temporal_detail=0.0, unreliable_init="matched", **HELD)),
    "matched-detail": ("temporal detail 0.25, matched fill, earned stop",
                       dict(temporal_detail=0.25, unreliable_init="matched", **HELD)),
    "held": ("low-pass, matched fill, stop at 1.15x, full temporal weight", dict(HELD)),
    "relax-115": ("+ temporal weight relaxed to the level, slack 1.15", dict(quality_slack=1.15)),
    "relax-105": ("+ temporal weight relaxed to the level, slack 1.05", dict(quality_slack=1.05)),
    "probe-5": ("+ the cold level probed every 5 frames", dict(probe_every=5)),
    "first-level": ("+ judged by the first frame's level throughout (no probes)", dict(probe_every=0)),
    "bilinear": ("+ later frames started from a bilinear warp", dict(start_warp="bilinear")),
    "no-share": ("+ relaxed however little the temporal term weighs", dict(relax_share=0.0)),
    "previous": ("earlier defaults: bilinear start, relaxed however little the term weighs, judged on the sum, "
                 "a miss restarting, the weight halved at each relaxation",
                 dict(start_warp="bilinear", relax_share=0.0, reprobe_after=0, term_slack=0.0, carry_misses=False,
                      temporal_relax=0.5)),
    "no-reprobe": ("+ not probed again after a miss, a miss restarting the next frame where it started",
                   dict(reprobe_after=0, carry_misses=False)),
    "restart": ("+ a miss restarting the next frame where it started", dict(carry_misses=False)),
    "halving": ("+ the temporal weight halved at each relaxation", dict(temporal_relax=0.5)),
    "terms": ("+ content and style each within 1.15x of their cold level", dict(term_slack=1.15)),
    "default": ("the current defaults", dict()),
}
