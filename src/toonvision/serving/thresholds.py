"""Score thresholds, defined once for the library and the command line (which imports this light module for
its defaults)."""

BOX_SCORE = 0.3  # a detector's box is reported from this score on: predict, watch, annotate, Pipeline, Detector
EVAL_SCORE = 0.05  # evaluation takes every box this confident or more: a low threshold is AP's own convention
PICTURE_SCORE = 0.15  # the demo's held-out pictures draw boxes from here, to show what a weak detector almost saw
