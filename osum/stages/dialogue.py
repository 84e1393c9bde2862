"""The dialogue stage (OSUM-EChat "empathy"): speech in, an optional think section, then a text reply (S2T) or a
text reply followed by its speech codes (S2S), over several turns. Same backbone, template and loss as every
stage; what differs is data: the dialogue tasks of ``osum.tasks.registry.DIALOGUE_TASKS``, the think form
(``rendering.think``: tag, language or none) and the earlier turns laid out by the ``<HISTORY>`` tasks."""

from __future__ import annotations

from osum.stages.base import StageBase


class DialogueStage(StageBase):
    stage_name = "dialogue"
