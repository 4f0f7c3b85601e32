"""ptychotrace: physics-informed neural network ptychography with end-to-end scale telemetry.

Pipeline: simulate -> split -> group -> train -> infer -> stitch -> compare -> analyze.
Every physics operation has exactly one implementation, in :mod:`ptychotrace.physics`.
"""

__version__ = "0.1.0"
