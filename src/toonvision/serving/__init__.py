"""The serving stage: what a bot holds (:class:`~toonvision.serving.pipeline.Pipeline`, the detector and the
classifiers behind one call, and the one rule that labels a box; :class:`~toonvision.serving.inference.Classifier`
and :class:`~toonvision.serving.detector.Detector` for one model), exporting models to ONNX, the live loop,
pre-annotation for labelImg and the review page's server."""
