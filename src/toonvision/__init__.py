"""ToonVision: teach a machine to see in ToonTown Online.

The command line is ``toonvision``. A program holds one :class:`toonvision.Pipeline` (the detector and the
classifiers together; calling it on a screenshot gives :class:`toonvision.Results`); :class:`toonvision.Classifier`
and :class:`toonvision.Detector` run one model at a time.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Classifier", "Detector", "Pipeline", "Results", "__version__"]


def __getattr__(name: str):
    # Lazy, so that importing the package (and every CLI verb) does not import TensorFlow.
    if name == "Classifier":
        from toonvision.serving.inference import Classifier

        return Classifier
    if name == "Detector":
        from toonvision.serving.detector import Detector

        return Detector
    if name in ("Pipeline", "Results"):
        from toonvision.serving import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'toonvision' has no attribute {name!r}")
