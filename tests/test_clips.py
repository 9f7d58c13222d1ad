"""The temporal benchmark's clips: their flows and visibility are the true ones."""
import numpy as np
import pytest
import torch

from pipeline import clips
from pipeline.flow import warp
from pipeline.variants import CLIP_NAMES, TUNED


def _warped(clip, t, flow):
    previous = torch.from_numpy(clip.frames[t - 1].astype(np.float32)).permute(2, 0, 1)[None]
    return warp(previous, flow)[0].permute(1, 2, 0).numpy()


def _error(clip, t, flow):
    diff = (clip.frames[t].astype(np.float32) - _warped(clip, t, flow))[clip.visible[t]]
    return float(np.sqrt((diff ** 2).mean()))


@pytest.mark.parametrize("name", ["flicker", "occluder"])
def test_whole_pixel_clips_are_their_predecessors_moved_by_the_true_flow(name):
    clip = clips.CLIPS[name](frames=5, width=64)
    for t in range(1, 5):
        assert _error(clip, t, clip.backward[t]) < 1e-3   # (grid_sample rounds)
        assert _error(clip, t, np.zeros_like(clip.backward[t])) > 10      # and they do move
        assert 0.85 < clip.visible[t].mean() < 1.0                        # something is revealed every frame


@pytest.mark.parametrize("name", ["zoom", "rotation", "long"])
def test_sub_pixel_clips_follow_their_true_flow(name):
    clip = clips.CLIPS[name](frames=6, width=96)
    for t in range(1, 6):
        still = np.zeros_like(clip.backward[t])
        assert _error(clip, t, clip.backward[t]) < 0.5 * _error(clip, t, still)
        # a flow off by half a pixel everywhere is worse than the true one
        assert _error(clip, t, clip.backward[t]) < _error(clip, t, clip.backward[t] + 0.5)


def test_the_occluders_trail_is_revealed_and_the_disc_itself_tracked():
    clip = clips.occluder_clip(frames=4, width=96)
    disc = clip.backward[2][..., 0] == 3
    background = clip.backward[2][..., 0] == 2   # the scene moves left by the pan: frame t(x) = frame t-1(x + 2)
    assert disc.sum() > 200 and background.sum() > 2000 and (disc | background).all()
    assert clip.visible[2][disc].all()           # the disc was wholly in view a frame before
    revealed = ~clip.visible[2] & background
    assert revealed[:, :-2].any()                # behind the disc, not only at the right edge


def test_the_rotation_reveals_the_corners_and_the_light_changes_alone():
    turn = clips.rotation_clip(frames=3, width=96)
    assert not turn.visible[2][0, 0] and not turn.visible[2][-1, -1] and turn.visible[2][32, 48]
    light = clips.light_clip(frames=9, width=96)
    assert np.abs(light.backward[4][..., 0] - 1).max() < 1e-6           # the pan of 1 px, nothing else moving
    assert light.frames[4].mean() < 0.7 * light.frames[0].mean()        # darker in the middle of the clip


def test_clips_are_split_into_tuned_and_held_out():
    made = {name: clips.CLIPS[name](frames=3, width=48) for name in CLIP_NAMES}
    assert {name for name, clip in made.items() if clip and clip.tuned} == set(TUNED) == {"flicker", "zoom"}
    assert len(made) - len(TUNED) >= 4


def test_sintel_is_judged_with_a_flow_the_product_does_not_use():
    clip = clips.sintel_clip(frames=3, width=128)
    if clip is None:
        pytest.skip(f"MPI-Sintel's clip is not at {clips.SHARED_SAMPLES} (not bundled: its licence is not stated)")
    assert clip.truth == "farneback" and clip.frames[0].shape == (54, 128, 3)
    assert 0.5 < clip.visible[1].mean() < 1.0 and np.abs(clip.backward[1]).mean() > 0.2
