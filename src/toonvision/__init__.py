"""ToonVision: teach a machine to see in ToonTown Online.

The command line is ``toonvision``; programs use :class:`toonvision.Classifier` to classify crops.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Classifier", "__version__"]


def __getattr__(name: str):
    # Lazy, so that importing the package (and every CLI verb) does not import TensorFlow.
    if name == "Classifier":
        from toonvision.serving.inference import Classifier

        return Classifier
    raise AttributeError(f"module 'toonvision' has no attribute {name!r}")
