"""CosyVoice-300M-25Hz's own flow and HiFT vocoder, loaded from a user's model folder, behind the ``Token2Wav``
inference interface.

A CosyVoice folder holds ``flow.pt`` and ``hift.pt`` (torch-saved state dicts, as CosyVoice releases them),
optionally ``campplus.onnx`` (the speaker embedding of a reference clip) and ``cosyvoice.yaml``.
``osum.token2wav.synthesizer.Token2Wav.load`` hands such a folder to ``CosyVoiceToken2Wav.load``.

Modules: ``config`` (the sizes: the published defaults, ``cosyvoice.yaml``'s scalar fields, what the state
dicts tell), ``encoder`` (the Conformer over the codes), ``estimator`` (the U-Net that predicts the flow's
velocity), ``flow`` (codes + x-vector -> 22050 Hz mel), ``hift`` (mel -> 22050 Hz audio), ``mel`` (CosyVoice's
mel, for prompts and Griffin-Lim), ``folder`` (the files, their keys and clear errors) and ``synthesizer``.
Imported on first use: ``osum.token2wav.cosyvoice.folder`` alone stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CosyVoiceToken2Wav", "is_cosyvoice_folder"]


def __getattr__(name: str) -> Any:
    if name == "CosyVoiceToken2Wav":
        from osum.token2wav.cosyvoice.synthesizer import CosyVoiceToken2Wav

        return CosyVoiceToken2Wav
    if name == "is_cosyvoice_folder":
        from osum.token2wav.cosyvoice.folder import is_cosyvoice_folder

        return is_cosyvoice_folder
    raise AttributeError(f"module 'osum.token2wav.cosyvoice' has no attribute {name!r}")
