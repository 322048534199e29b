"""Model code run by the TFX Trainer.

TFRS needs Keras 2 (tf_keras). This is the one place that says so; it must run before
TensorFlow is first imported, so every package of this project imports `trainer` first.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
