"""Checks of converted folders: Whisper transcription WER on LibriVox clips, LLM logits against the GGUF load."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from osum.convert.gguf import load_gguf
from osum.convert.packages import find_gguf


def _read_sphinx_transcription(path: Path) -> dict[str, str]:
    """``<s> words </s> (utt_id)`` lines -> {utt_id: words}."""
    refs = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(.*?)\s*\(([^()]+)\)\s*$", line)
        if match:
            refs[match.group(2)] = re.sub(r"</?s>", "", match.group(1)).strip()
    return refs


def check_whisper(model_dir: Path, audio_dir: Path, printer: Callable[[str], None] = print) -> float:
    """Greedy English transcription of every wav in ``audio_dir``; prints hyp/ref pairs and WERs and
    returns the WER after Whisper's English normalizer (``Mr.`` = ``mister``, ``ill-disposed`` = ...)."""
    import soundfile as sf
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from osum.metrics.wer import ErrorRate

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    refs = _read_sphinx_transcription(audio_dir / "transcription")
    language = {"language": "en", "task": "transcribe"} if model.generation_config.is_multilingual else {}
    pairs = []
    for wav in sorted(audio_dir.glob("*.wav")):
        audio, rate = sf.read(wav, dtype="float32")
        features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, num_beams=1, do_sample=False, **language)
        pairs.append(
            (refs.get(wav.stem, ""), processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        )
        printer(f"{wav.stem}\n  HYP: {pairs[-1][1]}\n  REF: {pairs[-1][0]}")
    normalizer = EnglishTextNormalizer({})
    plain, whisper_norm = ErrorRate("word"), ErrorRate("word")
    for ref, hyp in pairs:
        plain.add(ref, hyp)
        whisper_norm.add(normalizer(ref), normalizer(hyp))
    for label, scorer in (("osum.metrics.wer", plain), ("after Whisper's English normalizer", whisper_norm)):
        printer(f"WER ({label}): {100 * scorer.rate:.2f}% ({scorer.errors}/{scorer.ref_len})")
    return whisper_norm.rate


CHECK_PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.", "2 + 2 =")


def check_llm(model_dir: Path, gguf: str, printer: Callable[[str], None] = print) -> float:
    """Max |logit difference| between the GGUF load and the converted folder, plus one chat answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference, gguf_tokenizer = load_gguf(find_gguf(gguf))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    worst = 0.0
    for prompt in CHECK_PROMPTS:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt").input_ids
        if ids.tolist() != gguf_tokenizer(text, return_tensors="pt").input_ids.tolist():
            raise AssertionError("saved tokenizer and GGUF tokenizer disagree")
        with torch.inference_mode():
            diff = (reference(ids).logits - model(ids).logits).abs().max().item()
        worst = max(worst, diff)
        printer(f"{type(model).__name__} vs GGUF, {ids.shape[1]} tokens: max |dlogit| = {diff:.3e}")
    printer(f"max |logit difference| over {len(CHECK_PROMPTS)} prompts: {worst:.3e}")
    printer(f"chat: {CHECK_PROMPTS[0]!r} -> {_chat(model, tokenizer, CHECK_PROMPTS[0])!r}")
    return worst


def _chat(model, tokenizer, prompt: str, max_new_tokens: int = 40) -> str:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()

