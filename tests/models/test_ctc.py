"""The auxiliary CTC loss against the LLM's text embeddings."""

from __future__ import annotations

import torch

from osum.models.ctc import EmbeddingCTC


def test_speech_equal_to_the_spoken_embeddings_scores_better_than_noise() -> None:
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(50, 16), dim=-1)
    ctc = EmbeddingCTC(16)
    with torch.no_grad():
        ctc.log_scale.fill_(3.0)
    targets = torch.tensor([[3, 7, 7, 9], [5, 2, 0, 0]])
    lengths = torch.tensor([4, 2])
    aligned = torch.zeros(2, 8, 16)  # zeros score 0 with every class, the blank included
    for t, tok in enumerate([3, 7, 0, 7, 9]):
        if tok:
            aligned[0, t] = table[tok]
    aligned[1, 1], aligned[1, 4] = table[5], table[2]
    speech_lengths = torch.tensor([8, 6])
    with torch.no_grad():
        good, n = ctc(aligned, speech_lengths, table, targets, lengths)
        noise, _ = ctc(torch.randn(2, 8, 16), speech_lengths, table, targets, lengths)
    assert int(n) == 6 and float(good) < float(noise) - 1.0


def test_gradient_reaches_speech_not_the_table_and_unusable_samples_are_left_out() -> None:
    table = torch.randn(20, 8)
    speech = torch.randn(3, 5, 8, requires_grad=True)
    ctc = EmbeddingCTC(8)
    targets = torch.tensor([[1, 2, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    loss, n = ctc(speech, torch.tensor([5, 5, 5]), table, targets, torch.tensor([2, 0, 6]))
    loss.backward()
    assert int(n) == 2  # no transcript (length 0) and longer than the speech (6 > 5): not counted
    assert speech.grad[0].abs().sum() > 0 and speech.grad[1:].abs().sum() == 0
    assert ctc.blank.grad is not None and ctc.log_scale.grad is not None
