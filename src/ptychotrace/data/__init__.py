"""Datasets (the NPZ contract), grouping into training containers."""
