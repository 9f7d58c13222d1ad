"""The memory estimate: a frame that cannot fit is refused before any work, naming the size that does."""
import pytest

from pipeline import video
from pipeline.config import Config
from pipeline.errors import NSTError


def test_memory_estimate_refuses_a_frame_that_cannot_fit(tmp_path, weights_file, style_image, content_image,
                                                         monkeypatch):
    from pipeline import memory, runtime

    monkeypatch.setattr(runtime, "available_memory", lambda device: 600 * 2**20)
    with pytest.raises(NSTError, match=r"needs about .* GiB.*use --size \d+ or less"):
        video.run(video.Job(content_image, (style_image,), tmp_path / "o.png"),
                  Config(weights=str(weights_file), size=1024, device="cpu"))
    cfg = Config()
    assert memory.peak_bytes(1080, 1920, cfg) < 24 * 2**30 < memory.peak_bytes(2160, 3840, cfg)
    assert memory.largest_fitting_size(1080, 1920, cfg, 2 * 2**30) < 1920
