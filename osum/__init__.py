"""osum: a Lightning + Hydra training toolkit for speech LLMs of the OSUM family."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# configs/paths/default.yaml resolves relative paths against the directory a run starts from, so that
# checkpoints record absolute paths and decoding works from anywhere.
if not OmegaConf.has_resolver("osum.cwd"):
    OmegaConf.register_new_resolver("osum.cwd", os.getcwd)
