"""The model calls of the web demo: one loaded model (a checkpoint of any stage or an export folder) and, for spoken
output, a token2wav synthesizer; one method per mode, each returning a plain dict the page shows.

    understand   speech + a task tag string (or a free prompt) -> the answer, its transcript and tags
    s2t / s2s    one spoken turn of a conversation (osum.chat.ChatSession: history window, think on first turns)
                 -> think, reply (and for s2s the reply's speech codes, spoken as a wav)
    tts          text -> speech codes -> wav

``run(request)`` checks a page request (the JSON the page posts) and dispatches it; bad input raises
``InputError`` with a message for the page. Model calls hold one lock: the threaded server answers one request
at a time on the model. Modes the loaded model cannot do are listed by ``info()`` with the reason.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osum.chat import ChatSession
from osum.inference import DecodeOptions, SpeechAssistant
from osum.tasks.registry import UnknownTaskError
from osum.web.inputs import AudioInput, InputError, decode_upload, read_audio, wav_bytes

MODES = {"understand": "Understanding", "s2t": "S2T chat", "s2s": "S2S chat", "tts": "TTS"}
TAG_RE = re.compile(r"<[^<>\s][^<>]*>")
MAX_TEXT_CHARS = 1000
MAX_CONVERSATIONS = 32  # kept per server (least recently used dropped)


@dataclass
class Conversation:
    """The chat sessions of one conversation (S2T and S2S keep their own history) and the turns shown."""

    sessions: dict[str, ChatSession] = field(default_factory=dict)
    turns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class DemoService:
    def __init__(self, assistant: SpeechAssistant, synth=None, reference: np.ndarray | None = None,
                 max_seconds: float = 30.0, history: int = 5, max_new_tokens: int = 160,
                 max_reply_tokens: int | None = None, max_codes: int = 500, sample_chat: bool = False,
                 names: dict[str, str] | None = None):
        self.assistant, self.synth, self.reference = assistant, synth, reference
        self.max_seconds, self.max_reply_tokens = max_seconds, max_reply_tokens
        # the osum layout (instruction, speech, target) lays out one turn only: each chat turn is then a first turn
        self.multi_turn = assistant.builder.cfg.layout == "chatml"
        self.history = history if self.multi_turn else 0
        self.options = DecodeOptions(max_new_tokens=max_new_tokens)
        self.max_codes, self.sample_chat = max_codes, sample_chat
        self.names = dict(names or {})
        self.lock = threading.Lock()
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self.speech_reason = self._speech_reason()

    @classmethod
    def load(cls, ckpt: str, flow: str | None = None, vocoder: str | None = None, reference: str | None = None,
             device: str = "cpu", **kwargs: Any) -> DemoService:
        """The model of ``ckpt`` (checkpoint or export folder), token2wav from ``flow`` [+ ``vocoder``]; a voice
        ``reference`` clip. Files that cannot serve (a flow model of too few codes for a model that speaks, a bad
        reference clip) fail here, with a message that names them."""
        assistant = SpeechAssistant.load(ckpt, device)
        synth = ref = None
        if flow:
            from osum.token2wav import Token2Wav

            synth = Token2Wav.load(flow, vocoder, device=device)
            codes, vocab = assistant.builder.cfg.speech_codes, synth.flow.cfg.vocab_size
            if speech_head_trained(assistant) and vocab < codes:
                raise ValueError(f"--flow {flow}: the flow model knows {vocab} speech codes, the model {ckpt} "
                                 f"generates {codes} (template.speech_codes): they were trained on different "
                                 "speech tokenizers")
        if reference:
            try:
                ref = read_audio(Path(reference).name, Path(reference).read_bytes(), max_seconds=120.0).audio
            except InputError as e:
                raise ValueError(f"--reference {reference}: {e}") from None
        names = {"checkpoint": str(ckpt), "flow": str(flow or ""), "vocoder": str(vocoder or ""),
                 "reference": str(reference or ""), "device": device}
        return cls(assistant, synth, ref, names=names, **kwargs)

    # ------------------------------------------------------------------ what the model can do
    def _speech_reason(self) -> str | None:
        """Why spoken output is unavailable, or None."""
        if not speech_head_trained(self.assistant):
            return "this model's speech head was never trained (an understanding checkpoint): it makes no speech codes"
        if self.synth is None:
            return "no --flow given: speech codes need a token2wav flow model to become audio"
        return None

    def tasks(self) -> list[str]:
        """The understanding tasks: speech in, text out."""
        return [t.tag for t in self.assistant.registry.tasks.values() if t.output_type == "text" and t.needs_audio]

    def info(self) -> dict[str, Any]:
        think = self.assistant.registry.rendering.think
        reasons = {"understand": None, "s2t": None, "s2s": self.speech_reason, "tts": self.speech_reason}
        return {
            "modes": [{"id": m, "label": label, "available": reasons[m] is None, "reason": reasons[m]}
                      for m, label in MODES.items()],
            "tasks": self.tasks(),
            "think": think,
            "think_note": None if think != "none" else "this model was trained without a think section",
            "max_seconds": self.max_seconds,
            "history": self.history,
            "history_note": None if self.multi_turn else (
                "template.layout=osum has no multi-turn layout: each chat turn is answered on its own"),
            **{k: v for k, v in self.names.items() if v},
        }

    # ------------------------------------------------------------------ the page's requests
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """One page request: ``{"mode", "audio": {"name", "data": base64}, "task" | "prompt", "text", "conversation",
        "think"}`` -> the result of that mode (a spoken reply's wav as bytes under ``"wav"``)."""
        if not isinstance(request, dict):
            raise InputError("the request must be a JSON object")
        mode = request.get("mode")
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        reason = self.speech_reason if mode in ("s2s", "tts") else None
        if reason:
            raise InputError(f"{MODES[mode]} is not available: {reason}")
        if mode == "tts":
            return self.speak(str(request.get("text") or ""), seed=_int(request.get("seed"), "seed"))
        audio = decode_upload(request.get("audio"), "audio", self.max_seconds)
        if mode == "understand":
            return self.understand(audio, str(request.get("task") or ""), str(request.get("prompt") or ""))
        return self.chat(str(request.get("conversation") or ""), audio, speech_out=mode == "s2s",
                         think=bool(request.get("think", True)))

    def understand(self, audio: AudioInput, task: str = "", prompt: str = "") -> dict[str, Any]:
        """The answer to a task tag string (its first prompt, as `osum.decode` does) or to a free prompt."""
        registry, task, prompt = self.assistant.registry, " ".join(task.split()), prompt.strip()
        if not prompt and not task:
            raise InputError("task: give a task tag string (e.g. <TRANSCRIBE> <GENDER>) or a prompt")
        chosen = None
        if task:
            try:
                chosen = registry.get(task)
            except UnknownTaskError:
                raise InputError(f"task: unknown task {task!r}; understanding tasks: {', '.join(self.tasks())}") from None
            if chosen.output_type != "text" or not chosen.needs_audio:
                other = "S2S chat or TTS" if chosen.speech_target else "S2T chat"
                raise InputError(f"task: {task} is not an understanding task (speech in, text out); use {other}, "
                                 f"or one of: {', '.join(self.tasks())}")
        instruction = prompt or self.assistant.instruction(chosen, self.options)
        with self.lock:
            speech, lengths = self.assistant.speech([audio.audio])
            answer = self.assistant.answer(speech, lengths, [instruction], "text", self.options)[0]
        out: dict[str, Any] = {"mode": "understand", "input": audio.describe(), "task": chosen.tag if chosen else None,
                               "instruction": instruction, "answer": answer, "tags": TAG_RE.findall(answer)}
        if chosen is not None:
            parsed = registry.parse(chosen, answer)
            out["transcript"] = parsed.pop("transcript", None)
            out["fields"] = {k: v for k, v in parsed.items() if k not in ("words",)}
            if parsed.get("words"):
                out["fields"]["words"] = [list(w) for w in parsed["words"]]
        return out

    def new_conversation(self, old: str | None = None) -> str:
        """A new conversation's id (the ``old`` one is forgotten)."""
        with self.lock:
            self.conversations.pop(old or "", None)
            cid = uuid.uuid4().hex[:12]
            self._conversation(cid)
        return cid

    def _conversation(self, cid: str) -> Conversation:
        conv = self.conversations.get(cid)
        if conv is None:
            conv = self.conversations[cid] = Conversation()
            while len(self.conversations) > MAX_CONVERSATIONS:
                self.conversations.popitem(last=False)
        self.conversations.move_to_end(cid)
        return conv

    def chat(self, conversation: str, audio: AudioInput, speech_out: bool, think: bool = True) -> dict[str, Any]:
        """One spoken turn of ``conversation`` (made when unknown): the reply given the kept earlier turns."""
        mode = "s2s" if speech_out else "s2t"
        cid = conversation or uuid.uuid4().hex[:12]
        with self.lock:
            conv = self._conversation(cid)
            session = conv.sessions.get(mode)
            if session is None:
                session = conv.sessions[mode] = ChatSession(
                    self.assistant, speech_out=speech_out, window=self.history, greedy=not self.sample_chat,
                    max_new_tokens=self.max_reply_tokens)
            session.think = think
            kept = min(len(session.history), self.history)
            out_type, reply = session.ask(audio.audio)
            wav = None
            if speech_out and reply.speech:
                wav = self.synth(reply.speech, self.reference)
            turns = conv.turns.setdefault(mode, [])
            turn = {"turn": len(turns) + 1, "user": audio.name, "think": reply.think, "reply": reply.text,
                    "codes": len(reply.speech) if speech_out else None}
            turns.append(turn)
            shown = [dict(t) for t in turns]
        out: dict[str, Any] = {"mode": mode, "input": audio.describe(), "conversation": cid, "output_type": out_type,
                               "kept": kept, **turn, "turns": shown}
        if speech_out:
            out.update(_spoken(wav, reply.speech))
        return out

    def speak(self, text: str, seed: int = 0) -> dict[str, Any]:
        """TTS: the model's speech codes for ``text`` (the text2token sampling, seeded: the same text gives the
        same speech), spoken by token2wav in the reference voice."""
        text = " ".join(text.split())
        if not text:
            raise InputError("text: the text to speak is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"text: {len(text)} characters; this demo speaks at most {MAX_TEXT_CHARS}")
        with self.lock:
            generator = torch.Generator().manual_seed(seed)
            codes = self.assistant.speech_codes([text], generator=generator, max_new_tokens=self.max_codes)[0]
            wav = self.synth(codes, self.reference) if codes else None
        return {"mode": "tts", "text": text, "seed": seed, **_spoken(wav, codes)}


def speech_head_trained(assistant: SpeechAssistant) -> bool:
    """A speech head starts with a zero bias (``SpeechLLM``); one still all zeros was never trained (the understanding
    stage freezes it), so its codes would mean nothing."""
    return bool(assistant.backbone.speech_head.bias.detach().ne(0).any())


def _spoken(wav: np.ndarray | None, codes: list[int]) -> dict[str, Any]:
    if wav is None:
        return {"codes": len(codes), "wav": None, "seconds": 0.0, "note": "the model generated no speech codes"}
    return {"codes": len(codes), "wav": wav_bytes(wav), "seconds": round(len(wav) / 16000, 2)}


def _int(value: Any, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: {value!r} is not a whole number") from None
