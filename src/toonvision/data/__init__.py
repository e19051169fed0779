"""The data stage: what can be seen (taxonomy), labelImg's annotations, the workspace and its files,
extraction of crops from screenshots, splits, the crops as samples and pixels, and dataset statistics.

Nothing here imports Keras, TensorFlow, Ray, Panda3D or matplotlib: the data verbs start in a fraction of a
second.
"""
