"""The physical model: object, probe, scan, forward operator, dose and input scaling."""
