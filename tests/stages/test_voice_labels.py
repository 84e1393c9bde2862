"""Each clip's label token ids for the voice-label loss, taken from its sample's labels."""

import torch

from osum.models.backbone import LabelChoices
from osum.stages.base import clip_label_ids

KINDS = ["events", "gender"]
CHOICES = LabelChoices(torch.full((20,), -1), torch.tensor([[10, 11], [12, 13]]),
                       ({"BELL": 10, "COUGH": 11}, {"MALE": 12, "FEMALE": 13}))


def batch(metas, clip_keys, clip_sample, cropped=None):
    return {"keys": [f"s{i}" for i in range(len(metas))], "meta": metas, "clip_keys": clip_keys,
            "clip_sample": torch.tensor(clip_sample), "cropped": cropped or [False] * len(metas)}


def test_current_clips_get_their_samples_labels_and_history_clips_none():
    metas = [{"labels": {"gender": "female", "events": ["BELL"]}}, {"labels": {"gender": "MALE", "events": []}}]
    ids = clip_label_ids(batch(metas, ["s0", "s1.wav_0", "s1"], [0, 1, 1]), KINDS, CHOICES)
    assert ids.tolist() == [[10, 13], [-1, -1], [-1, 12]]  # lower case is canonical; no event is no label


def test_unknown_several_and_cropped_events_get_no_label():
    metas = [{"labels": {"gender": "OTHER", "events": ["BELL", "COUGH"]}}, {"labels": {"events": ["COUGH"]}}, {}]
    ids = clip_label_ids(batch(metas, ["s0", "s1", "s2"], [0, 1, 2], cropped=[False, True, False]), KINDS, CHOICES)
    assert ids.tolist() == [[-1, -1], [-1, -1], [-1, -1]]
    assert clip_label_ids({"keys": ["s0"], "meta": [{}], "clip_keys": None}, KINDS, CHOICES) is None
