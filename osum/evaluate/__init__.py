"""Judging generated speech with independent models: an ASR judge (Whisper), the text normalization that
makes its written form comparable to spoken-form references, and the TTS result table (WER, duration,
speaker similarity per system) as in OSUM-EChat's Table 5."""
