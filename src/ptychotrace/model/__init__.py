"""The PINN: network (encoder + amplitude/phase decoders), physics layer and losses."""

from .losses import LossNormaliser, compute_losses, poisson_nll
from .network import NetworkConfig, PtychoNet
from .pinn import PINN, PINNOutput, estimate_amplitude_reference

__all__ = ["LossNormaliser", "compute_losses", "poisson_nll", "NetworkConfig", "PtychoNet", "PINN",
           "PINNOutput", "estimate_amplitude_reference"]
