"""The machine learning runs on: TensorFlow's start-up, threads, seeds, determinism and arithmetic.

Everything that sets process-wide TensorFlow or Keras state is here, called explicitly by whoever runs
training or inference; importing this module imports neither.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter (oneDNN and absl notices) kept off the terminal.

    TensorFlow prints them from C++ whatever TF_CPP_MIN_LOG_LEVEL says, so standard error is pointed at
    /dev/null for the import only; a Python exception still surfaces normally.
    """
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # Retracing notices are about Keras' own predict function when several models run in one process
    # (demo, report): nothing a user can act on.
    tensorflow.get_logger().setLevel("ERROR")


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def configure_threads(threads: int | None) -> None:
    """Pin TensorFlow's and OpenCV's thread pools (must run before TensorFlow does any work in this process)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # already initialised: keep what it has
    import cv2

    cv2.setNumThreads(threads)  # augmentation: workers of one machine must not fight over its cores


def enable_determinism() -> None:
    """Same seed, same numbers, whichever process runs the job (TensorFlow's deterministic ops)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def seed_everything(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX). Only there are oneDNN's bfloat16
    convolutions faster than float32 ones; elsewhere bfloat16 is emulated and slower, so "auto" keeps float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap, reliable way to tell
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str) -> str:
    """The precision a run computes in: "float32" or "bfloat16" (``auto`` resolved for this machine)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


@contextmanager
def dtype_policy(precision: str):
    """Build layers under Keras' policy for ``precision`` (bfloat16 -> "mixed_bfloat16": float32 weights,
    bfloat16 arithmetic), restoring the previous policy after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
