"""Subcommands of the ``ptychotrace`` CLI; each module has ``add_parser`` and ``run``."""
