"""Tiny shard folders whose samples carry speech codes (as `osum.speech_tokens extract` writes them), plus
text-only chat samples: the data of the TTS-side recipes in tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osum.data.index import build_index, write_index
from osum.data.shards import ShardWriter

SENTENCES = ["turn on the light", "what is two plus three", "one two three", "four five six seven"]


def write_code_split(out: Path, n: int, seed: int = 0, codes: int = 512, replies: bool = False) -> None:
    """``n`` sentences with audio (noise of 0.6 s a word) and 25 Hz codes matching its length (a fixed code
    pattern per sentence), and ``n`` text-only question/answer samples. ``replies``: each sentence also has a
    spoken reply (its ``answer`` and member ``reply_flac``, the codes standing for the reply), as a dialogue
    corpus's samples do."""
    rng = np.random.default_rng(seed)
    with ShardWriter(out, max_samples=8) as w:
        for i in range(n):
            text = SENTENCES[i % len(SENTENCES)]
            n_codes = 15 * len(text.split())
            pattern = np.random.default_rng(len(text)).integers(0, codes, n_codes)
            audio = (0.1 * rng.standard_normal(n_codes * 640)).astype(np.float32)
            fields = {"txt": text, "speaker": f"v{i % 2}", "speech_tokens": [int(c) for c in pattern]}
            reply = {"reply_flac": (0.1 * rng.standard_normal(n_codes * 640)).astype(np.float32)} if replies else None
            w.write(f"s{i:03d}", audio, 16000, {**fields, "answer": f"sure. {text}."} if replies else fields,
                    extra_audio=reply)
            w.write_text_only(f"t{i:03d}", {"question": "what is two plus three", "answer": "five"})
    write_index(out, build_index(w.stats))
