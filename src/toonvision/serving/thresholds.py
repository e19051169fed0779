"""Score thresholds (and the live collector's bounds), defined once for the library and the command line (which
imports this light module for its defaults)."""

BOX_SCORE = 0.3  # a detector's box is reported from this score on: predict, watch, annotate, Pipeline, Detector
MAX_BOXES = 100  # a detector's boxes per screenshot at most, the highest scores first (COCO's and YOLO's 100)
EVAL_SCORE = 0.05  # evaluation takes every box this confident or more: a low threshold is AP's own convention
PICTURE_SCORE = 0.15  # the demo's held-out pictures draw boxes from here, to show what a weak detector almost saw

# What `watch --collect` calls unsure: a box the detector scored less than this above --conf (a slightly higher
# threshold would have lost it), or a label the rule gives less than this probability (less likely than not).
COLLECT_SCORE_MARGIN = 0.1
COLLECT_LABEL_BELOW = 0.5
COLLECT_FORMAT = "voc"  # the annotation beside a kept frame: labelImg's own, which labelImg and review open
COLLECT_PER_MINUTE = 6  # frames watch --collect keeps a minute at most: a review queue a person can keep up with
