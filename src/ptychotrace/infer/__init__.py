"""Inference: batched prediction of the test split and stitching into the object frame."""

from .predict import Prediction, predict, predict_test_split, test_groups

__all__ = ["Prediction", "predict", "predict_test_split", "test_groups"]
