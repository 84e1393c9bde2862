"""The TTS stage (OSUM-EChat "generation"): the shared backbone learns text -> speech codes (``S c1..cn S``)
with text-to-text chat mixed in to keep its text ability. Same backbone, template and loss as every stage:
the speech head's loss is weighted (``model.loss_weights.speech``) and logged (``train|val/loss_speech``,
``acc_speech``) apart from the text head's. Codes become audio outside the model (``osum.token2wav``)."""

from __future__ import annotations

import re

from osum.stages.base import StageBase


class TTSStage(StageBase):
    stage_name = "tts"

    def __init__(self, model, *args, **kwargs):
        frozen = [p for p in model.get("freeze") or [] if re.search(p, "speech_head.weight")]
        unfrozen = [p for p in model.get("unfreeze") or [] if re.search(p, "speech_head.weight")]
        if frozen and not unfrozen:
            raise ValueError(f"model.freeze {frozen} freezes speech_head: the TTS stage trains it "
                             "(drop that pattern, or add '^speech_head\\.' to model.unfreeze)")
        if float((model.get("loss_weights") or {}).get("speech", 1.0)) <= 0:
            raise ValueError("model.loss_weights.speech must be > 0 in the TTS stage: it is what the stage trains")
        super().__init__(model, *args, **kwargs)
