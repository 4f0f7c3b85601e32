"""PINN training: trainer loop, checkpoints, data-parallel support."""

from .checkpoint import load_checkpoint, load_model
from .trainer import TrainResult, forward_pass_diagnostics, prepare_training_data, train

__all__ = ["train", "TrainResult", "forward_pass_diagnostics", "prepare_training_data",
           "load_checkpoint", "load_model"]
