"""Optical flow, warping and Ruder et al.'s consistency weights, against a clip whose motion is known."""
import cv2
import numpy as np
import torch

from pipeline.config import Config
from pipeline.flow import (FlowEstimator, MotionAnalyser, MotionStream, analyse, consistency, flow_workers,
                           histogram_distance, long_term_offsets, long_term_weights, warp)
from pipeline.synthetic import moving_clip

CFG = Config()


def _analyse(a, b, estimator=None, **changes):
    cfg = CFG.replace(**changes)
    return analyse(a, b, estimator or FlowEstimator(cfg.flow_method, cfg.dis_preset), cfg)


def test_warp_with_zero_flow_is_the_identity():
    image = torch.rand(1, 3, 17, 23)
    assert torch.allclose(warp(image, np.zeros((17, 23, 2), np.float32)), image, atol=1e-5)  # float32 rounding


def test_whole_pixel_translation_warps_exactly():
    image = torch.rand(1, 3, 20, 30)
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3, -2     # each pixel takes the value 3 right and 2 up
    moved = warp(image, flow)
    assert torch.allclose(moved[..., 2:, :27], image[..., :18, 3:], atol=1e-5)  # exact up to float32 rounding


def test_dis_recovers_the_known_motion():
    clip = moving_clip(frames=4, width=128, height=80)
    estimator = FlowEstimator("dis", "medium")
    for t in range(1, 4):
        motion = _analyse(clip.frames[t - 1], clip.frames[t], estimator)
        error = np.linalg.norm(motion.backward - clip.backward[t], axis=-1)[clip.visible[t]]
        assert np.median(error) < 0.1 and error.mean() < 0.5


def test_consistency_marks_disoccluded_strip_and_trailing_edge_and_trusts_the_rest():
    clip = moving_clip(frames=6, width=128, height=80, pan=2, object_speed=3, object_size=26)
    estimator = FlowEstimator("dis", "medium")
    top = (80 - 26) // 2
    for t in range(1, 6):
        weights = _analyse(clip.frames[t - 1], clip.frames[t], estimator).weights
        hidden = ~clip.visible[t]
        right_strip = np.zeros_like(hidden)
        right_strip[:, -clip.pan:] = True
        assert (weights[right_strip] == 0).all()                      # entered the frame: nothing to warp
        trailing = hidden & ~right_strip                                  # uncovered behind the object
        assert trailing.any() and (weights[trailing] < 0.5).mean() > 0.9
        # everything else, a few pixels away from those regions and the object's outline, is reliable
        edges = np.zeros(hidden.shape, np.uint8)
        left = 4 + t * clip.object_speed
        cv2.rectangle(edges, (left, top), (left + 25, top + 25), 1, 1)
        near = cv2.dilate((hidden | edges.astype(bool)).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        assert (weights[~near] > 0.5).mean() > 0.9


def test_photometric_check_catches_what_the_round_trip_misses():
    clip = moving_clip(frames=6, width=128, height=80)
    estimator = FlowEstimator("dis", "medium")
    caught = {}
    for photometric in (0.0, 0.05):
        values = []
        for t in range(1, 6):
            weights = _analyse(clip.frames[t - 1], clip.frames[t], estimator, photometric=photometric).weights
            values.append((weights[~clip.visible[t]] < 0.5).mean())
        caught[photometric] = np.mean(values)
    assert caught[0.05] > caught[0.0] and caught[0.05] > 0.95


def test_a_change_of_light_is_not_taken_for_a_flow_failure():
    """The light of clips.light_clip dims by up to 9% a frame while the camera pans: the flow is right, so the
    photometric test, which compares after a gain per channel, keeps trusting it."""
    from pipeline.clips import light_clip

    clip = light_clip(frames=16, width=96)
    estimator = FlowEstimator("dis", "medium")
    for t in (3, 4, 12):
        weights = _analyse(clip.frames[t - 1], clip.frames[t], estimator).weights
        assert (weights[clip.visible[t]] < 0.5).mean() < 0.05


def test_consistency_rule_on_hand_made_flows():
    backward = np.zeros((10, 10, 2), np.float32)
    forward = np.zeros((10, 10, 2), np.float32)
    assert (consistency(backward, forward, grow=0, blur=0) == 1).all()
    backward[..., 0] = 2.0          # every pixel came from 2 px to the right ...
    forward[..., 0] = 1.0           # ... but that pixel says it went 1 px right: no round trip
    weights = consistency(backward, forward, grow=0, blur=0)
    assert (weights[:, :8] == 0).all()
    forward[..., 0] = -2.0          # a consistent round trip; the last two columns came from outside
    weights = consistency(backward, forward, grow=0, blur=0)
    assert (weights[:, :8] == 1).all() and (weights[:, 8:] == 0).all()


def test_a_cut_and_a_blank_frame_are_detected_without_crashing():
    a = moving_clip(frames=2, width=96, height=64, seed=1).frames[0]
    b = np.full_like(a, 200)
    b[::7] = 10
    assert _analyse(a, b).cut
    blank = np.zeros_like(a)
    motion = _analyse(a, blank)
    assert motion.cut and motion.weights.shape == a.shape[:2]
    assert not _analyse(a, a).cut and histogram_distance(a, a) < 1e-6


def test_long_term_weights_count_only_what_closer_frames_miss():
    from pipeline.flow import Motion

    shape = (4, 4)
    c1 = np.zeros(shape, np.float32)
    c1[:, :2] = 1
    c2 = np.ones(shape, np.float32)
    motions = [Motion(1, np.zeros(shape + (2,)), c1, 0.5, 0, False), Motion(2, np.zeros(shape + (2,)), c2, 1, 0, False)]
    w1, w2 = long_term_weights(motions)
    assert np.array_equal(w1, c1) and np.array_equal(w2, 1 - c1)
    assert long_term_offsets(0) == [1] and long_term_offsets(3) == [1, 2, 4, 8]


def test_repeated_sub_pixel_warps_smear_texture_along_the_motion_except_nearest():
    """A later frame starts from the previous result warped: at 0.7 px a frame a bilinear warp averages
    neighbours along the motion every frame, and ten frames on the grain has become horizontal streaks
    (start_warp: the start can be resampled without that blur)."""
    def detail_energy(frame):  # mean squared neighbour difference of luminance, across x and across y
        grey = frame.astype(np.float32).mean(-1) / 255
        return np.square(np.diff(grey, axis=1)).mean(), np.square(np.diff(grey, axis=0)).mean()

    grain = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = -0.7  # each pixel comes from 0.7 px to its left: a pan to the right
    detail = {}
    for mode in ("bilinear", "bicubic", "nearest"):
        image = torch.from_numpy(grain).permute(2, 0, 1)[None].float() / 255
        for _ in range(10):
            image = warp(image, flow, mode)
        frame = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, 12:]  # past the border
        x, y = detail_energy(frame)
        detail[mode] = x / y
    x, y = detail_energy(grain)
    assert 0.8 < x / y < 1.25                    # grain: as much detail across x as across y
    assert detail["bilinear"] < 0.5              # streaks
    assert detail["bilinear"] < detail["bicubic"] < detail["nearest"]
    assert detail["nearest"] > 0.8               # whole pixels moved: the grain is intact


def test_flow_computed_ahead_in_several_threads_is_the_same_flow_in_the_same_order():
    """On a GPU the flow runs ahead in a pool of threads, each with its own DIS: the consumer gets every frame in
    order with exactly the motions one thread would give (long-term pairs included), none for the frames not
    needed, and flow time summed over the threads; a failure in a thread is raised at its frame."""
    import pytest

    frames = moving_clip(frames=9, width=96, height=64).frames
    cfg = CFG.replace(long_term=1)
    serial = MotionAnalyser(cfg)
    expected = [serial(frame, needed=index != 4) for index, frame in enumerate(frames)]
    stream = MotionStream(cfg, workers=3, needed=lambda index: index != 4)
    got = list(stream(enumerate(frames)))
    assert [index for index, _, _ in got] == list(range(9)) and all(f is frames[i] for i, f, _ in got)
    for (_, _, motions), wanted in zip(got, expected):
        assert [m.offset for m in motions] == [m.offset for m in wanted]
        for m, w in zip(motions, wanted):
            assert np.array_equal(m.backward, w.backward) and np.array_equal(m.weights, w.weights) and m.cut == w.cut
    assert stream.pairs == serial.pairs == 13 and stream.seconds > 0       # 1 + 2 x 7, less frame 4's 2
    assert flow_workers("cpu") == 1 and 1 <= flow_workers("cuda") <= 4

    def broken():
        yield 0, frames[0]
        yield 1, None                    # not a frame: the analysis fails in its thread
        yield 2, frames[2]
    seen = []
    with pytest.raises(Exception):
        for index, _, _ in MotionStream(cfg, workers=2)(broken()):
            seen.append(index)
    assert seen == [0]
    early = MotionStream(cfg, workers=3)(enumerate(frames))
    assert next(early)[0] == 0
    early.close()                        # a consumer that stops early leaves no thread behind
