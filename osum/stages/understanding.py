"""The understanding stage (OSUM "ASR+X"): speech in, text out (transcripts, tags, timestamps, answers)."""

from __future__ import annotations

from osum.stages.base import StageBase


class UnderstandingStage(StageBase):
    stage_name = "understanding"
