"""osum: a Lightning + Hydra training toolkit for speech LLMs of the OSUM family."""

__version__ = "0.1.0"
