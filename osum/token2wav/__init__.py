"""token2wav: 25 Hz discrete speech codes -> log mel (conditional flow matching) -> 16 kHz audio (a Vocos-style
vocoder, or Griffin-Lim without training).

Modules: ``mel`` (the mel and the frame rule: 4 frames per code), ``griffin_lim``, ``flow``, ``vocoder``,
``data`` (the training stream), ``stages`` (LightningModules for ``python -m osum.train +recipe=mini_flow`` /
``mini_vocoder``), ``synthesizer`` (``Token2Wav`` for inference), ``cli`` (``python -m osum.token2wav``) and
``cosyvoice`` (a CosyVoice-300M-25Hz folder's own flow and HiFT vocoder, which ``Token2Wav.load`` accepts).
``Token2Wav`` is imported on first use, so the light modules do not pull in Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Token2Wav"]


def __getattr__(name: str) -> Any:
    if name == "Token2Wav":
        from osum.token2wav.synthesizer import Token2Wav

        return Token2Wav
    raise AttributeError(f"module 'osum.token2wav' has no attribute {name!r}")
