"""The learning stage: the model registry, augmentation, training runs, experiments of many runs, and
evaluation; and the one place that finds a trained model and what it was trained with (``model_files``).

Keras and TensorFlow are imported inside functions, never when a module of this package is imported.
"""
