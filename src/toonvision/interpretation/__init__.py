"""What a trained model sees: the :class:`~toonvision.interpretation.explainer.Explainer` (activations,
filter patterns, class activation maps) and the arithmetic of heatmaps and receptive fields (``cam``).
Figures of them are drawn by :mod:`toonvision.figures.interpretation`."""
