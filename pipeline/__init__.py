"""nst-video: neural style transfer for videos, frame folders and images (Gatys et al. 2016, with
Ruder et al. 2016's optical-flow temporal consistency)."""
__version__ = "0.1.0"
