"""ToonVision: teach a machine to see in ToonTown Online.

The command line is ``toonvision``; programs use :class:`toonvision.Classifier` to classify crops and
:class:`toonvision.Detector` to find every Toon and Cog in a screenshot.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Classifier", "Detector", "__version__"]


def __getattr__(name: str):
    # Lazy, so that importing the package (and every CLI verb) does not import TensorFlow.
    if name == "Classifier":
        from toonvision.serving.inference import Classifier

        return Classifier
    if name == "Detector":
        from toonvision.serving.detector import Detector

        return Detector
    raise AttributeError(f"module 'toonvision' has no attribute {name!r}")
