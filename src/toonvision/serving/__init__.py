"""The serving stage: what a bot holds (:class:`~toonvision.serving.inference.Classifier`), exporting
models to ONNX, and predictions on crops and screenshots."""
