"""CLI of stage captions."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
