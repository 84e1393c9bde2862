"""Judging the TTS chain in one run: held-out sentences through each step, transcribed by an independent ASR.

Rows, on the same sentences, so the table shows where quality is lost (OSUM-EChat Table 5 scores TTS by the
WER of an independent ASR):

    recorded                         the test recording itself (the judge's own floor)
    recorded mel -> vocoder          the vocoder alone (and "-> Griffin-Lim", the no-training fallback)
    true codes -> token2wav          the speech tokenizer's codes of the recording, resynthesized
    text -> LLM codes -> token2wav   the TTS stage's codes for the sentence

each token2wav row with the neural vocoder and with Griffin-Lim. The voice comes from a reference clip: another
test recording of the same speaker (never the sentence itself). Beside the WER it reports how the codes
agree: the round trip (true codes -> wav -> the tokenizer's codes again) and the LLM's codes against the true
ones, as an edit rate over codes and a length ratio; and speaker similarity (resemblyzer, ``osum[speaker]``) of
each clip to the voice reference, so the recorded row is the same-speaker ceiling.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osum.data.audio import decode_audio
from osum.data.reader import read_shard
from osum.data.shardlist import resolve_shards
from osum.data.skips import SkipCounter
from osum.evaluate.tts_table import tts_table
from osum.metrics.wer import edit_ops

log = logging.getLogger("osum.evaluate")


@dataclass
class TestSentence:
    key: str
    text: str
    speaker: str
    audio: np.ndarray
    codes: list[int] | None


def read_test_set(shards: Sequence[str], limit: int | None = None) -> list[TestSentence]:
    """Samples with audio and a transcript, in key order; at most ``limit`` (``spread``)."""
    skips, found = SkipCounter(), []
    for shard in resolve_shards(list(shards)):
        for raw in read_shard(shard, skips):
            text = str(raw.meta.get("txt") or "").strip()
            if raw.audio is None or not text:
                continue
            codes = raw.meta.get("speech_tokens")
            found.append(TestSentence(raw.key, text, str(raw.meta.get("speaker") or "unknown"),
                                      decode_audio(raw.audio), list(codes) if isinstance(codes, list) else None))
    if skips.total:
        log.warning("%s", skips.summary())
    found.sort(key=lambda s: s.key)
    return spread(found, limit)


def spread(items: list[TestSentence], limit: int | None) -> list[TestSentence]:
    """At most ``limit`` of ``items``, every k-th: all speakers and domains keep their share."""
    if not limit or len(items) <= limit:
        return items
    return [items[round(i * len(items) / limit)] for i in range(limit)]


def references(sentences: list[TestSentence], pool: list[TestSentence]) -> list[np.ndarray]:
    """For each sentence, another recording of its speaker from ``pool``: the next one in key order that says
    something else (the first such one after the last)."""
    by_speaker: dict[str, list[TestSentence]] = defaultdict(list)
    for s in pool:
        by_speaker[s.speaker].append(s)
    out = []
    for s in sentences:
        others = [o for o in by_speaker[s.speaker] if o.text != s.text] or [s]
        out.append(next((o for o in others if o.key > s.key), others[0]).audio)
    return out


def code_agreement(true: Sequence[Sequence[int]], other: Sequence[Sequence[int]]) -> dict[str, float]:
    """Code edit rate (substitutions + deletions + insertions over true codes), exact position match over the
    shorter length, and length ratio, over all pairs."""
    errors = total = same = compared = 0
    ratio = []
    for t, o in zip(true, other):
        s, d, i, _ = edit_ops([str(c) for c in t], [str(c) for c in o])
        errors, total = errors + s + d + i, total + len(t)
        n = min(len(t), len(o))
        same, compared = same + sum(a == b for a, b in zip(t[:n], o[:n])), compared + n
        ratio.append(len(o) / max(len(t), 1))
    return {"code_edit_rate": errors / max(total, 1), "position_match": same / max(compared, 1),
            "length_ratio": float(np.mean(ratio)) if ratio else float("nan"), "pairs": len(ratio)}


def judge_tts(shards: Sequence[str], out_dir: str | Path, asr: str, flow: str | None = None,
              vocoder: str | None = None, tts_ckpt: str | None = None, tokenizer: str | None = None,
              limit: int | None = 60, griffin_lim: bool = True, greedy: bool = False, streaming: bool = False,
              seed: int = 0, max_codes: int = 500, device: str = "cpu") -> dict[str, Any]:
    """Build the rows (module docstring) from what is given, score them, write ``out_dir``; returns the result.
    ``streaming``: the LLM's codes come from the interleaved output type (``text2token_streaming``)."""
    from osum.evaluate.asr import AsrJudge
    from osum.token2wav import Token2Wav

    pool = read_test_set(shards)  # every test recording: the voice references come from all of them
    sentences = spread(pool, limit)
    if not sentences:
        raise ValueError(f"no samples with audio and a transcript in {list(shards)}")
    refs = references(sentences, pool)
    speech_tokenizer = None
    if tokenizer:
        from osum.speech_tokens import SpeechTokenizer

        speech_tokenizer = SpeechTokenizer.load(tokenizer, device)
    true_codes = [s.codes for s in sentences]
    if any(c is None for c in true_codes):
        if speech_tokenizer is None:
            raise ValueError("some test samples have no speech_tokens: give --tokenizer to compute them")
        true_codes = speech_tokenizer.encode_batch([s.audio for s in sentences])

    rows: dict[str, list] = {"recorded": [(s.key, s.text, s.audio) for s in sentences]}
    agreement: dict[str, Any] = {}
    synths: dict[str, Any] = {}
    if flow and vocoder:
        synths["vocoder"] = Token2Wav.load(flow, vocoder, device)
    if flow and (griffin_lim or not vocoder):
        synths["Griffin-Lim"] = Token2Wav.load(flow, "griffin_lim", device)
    for name, synth in synths.items():
        mels = [synth.mel.mel_spectrogram(s.audio) for s in sentences]  # the synthesizer's own mel
        rows[f"recorded mel -> {name}"] = list(zip([s.key for s in sentences], [s.text for s in sentences],
                                                   synth.vocode(mels)))
    llm_codes = None
    if tts_ckpt:
        from osum.inference import SpeechAssistant

        assistant = SpeechAssistant.load(tts_ckpt, device)
        output_type = "text2token_streaming" if streaming else "text2token"
        generator = torch.Generator().manual_seed(seed)
        llm_codes = []
        for start in range(0, len(sentences), 16):
            batch = [s.text for s in sentences[start : start + 16]]
            llm_codes += assistant.speech_codes(batch, output_type, greedy=greedy, generator=generator,
                                                max_new_tokens=max_codes)
        agreement["llm codes vs true codes"] = code_agreement(true_codes, llm_codes)
        empty = sum(not c for c in llm_codes)
        if empty:
            log.warning("the TTS model generated no codes for %d of %d sentences", empty, len(llm_codes))
    for name, synth in synths.items():
        for source, codes in (("true codes", true_codes), ("text -> LLM codes", llm_codes)):
            if codes is None:
                continue
            usable = [i for i, c in enumerate(codes) if c]
            wavs = synth.synthesize_batch([codes[i] for i in usable], [refs[i] for i in usable],
                                          seed=seed) if usable else []  # none: every clip is silence
            by_index = dict(zip(usable, wavs))
            rows[f"{source} -> token2wav ({name})"] = [
                (s.key, s.text, by_index.get(i, np.zeros(1600, np.float32))) for i, s in enumerate(sentences)]
            if source == "true codes" and speech_tokenizer is not None:
                again = speech_tokenizer.encode_batch([by_index[i] for i in usable])
                agreement[f"round trip ({name}): true codes -> wav -> codes"] = code_agreement(
                    [codes[i] for i in usable], again)
    judge = AsrJudge(asr, device)
    # speaker similarity against the voice token2wav was given: the recorded row is the same-speaker ceiling
    result = tts_table(rows, judge, out_dir, references={s.key: ref for s, ref in zip(sentences, refs)})
    result["code_agreement"] = agreement
    result["settings"] = {"shards": list(shards), "asr": asr, "flow": flow, "vocoder": vocoder, "tts": tts_ckpt,
                          "tokenizer": tokenizer, "sentences": len(sentences), "greedy": greedy, "streaming": streaming,
                          "seed": seed}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "tts_table.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for name, values in agreement.items():
        print(f"{name}: code edit rate {100 * values['code_edit_rate']:.1f}%, position match "
              f"{100 * values['position_match']:.1f}%, length ratio {values['length_ratio']:.2f} "
              f"({values['pairs']} sentences)")
    return result
