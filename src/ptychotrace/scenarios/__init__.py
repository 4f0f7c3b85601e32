"""Scenario runner: one command from simulation to comparison, with the scale chain recorded."""
