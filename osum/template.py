"""The one sequence builder: token ids, speech placeholders and two target channels for every output type.

Data workers use it to build training batches (and to know sequence lengths for batching), the
backbone only fills its speech placeholders with adapter outputs, and generation lays out its prompt
with the same code stopped before the target, so training and inference cannot drift apart
(reference pain points 5-6).

A sample is a list of ``Turn``s: what the user gave (``Text``, a speech clip ``Speech(n)``, or
``SpeechTokens``) and the assistant's reply (think section, text, speech codes). The last turn's reply
is the target; earlier turns are history, laid out exactly as a current turn of the same output type
would be with what the model generated for it, and masked. ``OUTPUT_TYPES`` says, per output type, its
system prompt, which user parts it takes, its target parts, whether they are interleaved (6 text :
18 speech), and how generation starts, stops and samples (reference sections 1.7, 5.2-5.6).

Id convention in ``input_ids`` (plain ints, no special tensor types):
    id >= 0        a text token, embedded with the LLM's input embeddings
    id == SPEECH   (-1) one speech embedding from the adapter, filled in by the backbone
    id <= -2       row ``-id - 2`` of the speech-token table (codes, the boundary S, input BOS / EOS)

``text_targets`` and ``speech_targets`` have the length of ``input_ids``: ``text_targets[t]`` is the text
token the model must predict from position ``t`` (already shifted) and ``speech_targets[t]`` the speech
code (0..S); ``IGNORE`` (-100) where that head is not trained. At most one of the two is set per position.

Layouts:
    osum:    [instruction] [S_BOS] [speech ...] [S_EOS] [target] [EOS]            (no history)
    chatml:  <|im_start|>system\\n{system}<|im_end|>\\n
             ( <|im_start|>user\\n{user content}<|im_end|>\\n<|im_start|>assistant\\n{reply}  \\n )*  history
             <|im_start|>user\\n{user content}<|im_end|>\\n<|im_start|>assistant\\n{target}
    user content: [text] [S_BOS speech S_EOS] [S c1..cn S] in the order given
    reply/target: [<think>{think}<think end>][text][EOS_T][S c1..cn S]   (the parts the output type names)
    A think type's ``<think>`` opener is context, not target: the output type (the caller) decides whether the
    model thinks, so its prompt ends with the opener and generation starts inside the think section.
Every sample is contiguous; a batch is padded at the right only.
"""

from __future__ import annotations

import math
from collections import abc
from dataclasses import dataclass, field, replace
from typing import Any

SPEECH = -1
IGNORE = -100


@dataclass(frozen=True)
class SpeechVocab:
    """The speech-token vocabulary, in one place: ``codes`` codes (0..codes-1), then the boundary S that opens
    and closes a target speech span, then BOS / EOS around input speech (reference 1.5: 4096, 4097, 4098)."""

    codes: int = 4096

    @property
    def boundary(self) -> int:
        return self.codes

    @property
    def input_bos(self) -> int:
        return self.codes + 1

    @property
    def input_eos(self) -> int:
        return self.codes + 2

    @property
    def head_size(self) -> int:
        """Classes of the speech head: the codes and S (the original's ``speech_token_num``)."""
        return self.codes + 1

    @property
    def table_rows(self) -> int:
        """Rows of the speech-token table: the codes, S, input BOS and EOS."""
        return self.codes + 3

    def check(self, table_rows: int, head_size: int) -> None:
        if (table_rows, head_size) != (self.table_rows, self.head_size):
            raise ValueError(f"speech vocabulary of {self.codes} codes needs a speech table of {self.table_rows} rows "
                             f"and a speech head of {self.head_size} classes; the model has {table_rows} and "
                             f"{head_size} (model.speech_token_num must be template.speech_codes + 1)")


def speech_table_id(row: int) -> int:
    """The ``input_ids`` value that stands for row ``row`` of the speech-token table."""
    return -row - 2


# ---------------------------------------------------------------------------------------------- turns
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Speech:
    """A speech clip: ``n`` adapter embeddings between input BOS and EOS."""

    n: int


@dataclass(frozen=True)
class SpeechTokens:
    """Speech codes given as input (framed by S, embedded from the speech table, never supervised)."""

    codes: tuple[int, ...]


Part = Text | Speech | SpeechTokens
PART_KIND = {Text: "text", Speech: "speech", SpeechTokens: "speech_tokens"}


@dataclass
class Turn:
    """One exchange: the user's parts and the assistant's reply (all optional; the output type says which
    reply parts it lays out). ``supervised`` None means: only the last turn of a sample is trained."""

    user: list[Part]
    think: str | None = None
    text: str | None = None
    speech: abc.Sequence[int] | None = None
    supervised: bool | None = None

    @classmethod
    def spoken(cls, n_speech: int, instruction: str | None = None, **reply: Any) -> Turn:
        """A turn whose user gives an optional instruction and one speech clip of ``n_speech`` embeddings."""
        return cls([*([Text(instruction)] if instruction else []), *([Speech(n_speech)] if n_speech else [])],
                   **reply)


# ---------------------------------------------------------------------------------------------- output types
UNDERSTANDING_SAMPLING = {"do_sample": True, "top_k": 5, "top_p": 0.9, "temperature": 1.0, "repetition_penalty": 1.05}
CHAT_SAMPLING = {"do_sample": True, "top_k": 2, "top_p": 1.0, "temperature": 0.4, "repetition_penalty": 1.05}
TTS_SAMPLING = {"do_sample": True, "top_k": 15, "top_p": 0.8, "temperature": 1.2, "repetition_penalty": 1.0}
S2S_SAMPLING = {"do_sample": True, "top_k": 10, "top_p": 0.9, "temperature": 1.2, "repetition_penalty": 1.0}
GREEDY = {"do_sample": False}


@dataclass(frozen=True)
class OutputType:
    """How one output type is laid out and generated (reference 1.7, 5.2, 5.6)."""

    name: str
    user: tuple[str, ...]  # user part kinds it takes, in this order (each optional)
    target: tuple[str, ...]  # reply parts: "think", "text", "eos", "speech"
    interleave: tuple[int, int] | None = None  # (text, speech) chunk sizes of streaming types
    reread: tuple[int, int] | None = None  # after the text and EOS: (n_text reply tokens again as context, n_speech)
    history: bool = False  # earlier turns precede the current one
    start_phase: str = "text"  # generation: "text", or "speech" (TTS starts from the S embedding)
    stop: str = "text_eos"  # "text_eos" | "speech_end" (the closing S) | "text_then_speech" (EOS_T, then S..S)
    sampling: abc.Mapping[str, Any] = field(default_factory=lambda: dict(GREEDY))  # text phase
    speech_sampling: abc.Mapping[str, Any] | None = None  # speech phase
    max_new_tokens: int = 400

    @property
    def speech_out(self) -> bool:
        return "speech" in self.target

    def plan(self) -> dict[str, Any]:
        """The generation plan (``osum.models.generation.PhasePlan.from_dict``)."""
        return {"start_phase": self.start_phase, "interleave": self.interleave, "reread": self.reread,
                "stop": self.stop, "max_new_tokens": self.max_new_tokens}


_S2S = ("text", "eos", "speech")
OUTPUT_TYPES: dict[str, OutputType] = {o.name: o for o in [
    OutputType("text", ("text", "speech"), ("text", "eos"), sampling=UNDERSTANDING_SAMPLING),
    OutputType("s2t_chat", ("speech",), ("text", "eos"), sampling=CHAT_SAMPLING),
    OutputType("s2t_chat_think", ("speech",), ("think", "text", "eos"), sampling=CHAT_SAMPLING, max_new_tokens=800),
    OutputType("s2t_chat_history", ("speech",), ("text", "eos"), history=True, sampling=CHAT_SAMPLING),
    OutputType("text2text", ("text",), ("text", "eos"), max_new_tokens=200),
    OutputType("text2token", ("text",), ("speech",), start_phase="speech", stop="speech_end",
               sampling=TTS_SAMPLING, speech_sampling=TTS_SAMPLING, max_new_tokens=2000),
    OutputType("text2token_streaming", ("text",), _S2S, interleave=(6, 18), stop="text_then_speech",
               sampling=TTS_SAMPLING, speech_sampling=TTS_SAMPLING, max_new_tokens=2000),
    OutputType("speech2text_token", ("speech",), _S2S, stop="text_then_speech", sampling=S2S_SAMPLING,
               speech_sampling=S2S_SAMPLING, max_new_tokens=2000),
    OutputType("speech2text_token_think", ("speech",), ("think", *_S2S), stop="text_then_speech",
               sampling=S2S_SAMPLING, speech_sampling=S2S_SAMPLING, max_new_tokens=2500),
    OutputType("speech2text_token_history", ("speech",), _S2S, history=True, stop="text_then_speech",
               sampling=S2S_SAMPLING, speech_sampling=S2S_SAMPLING, max_new_tokens=2000),
    OutputType("speech2text_token_streaming", ("speech",), _S2S, interleave=(6, 18), stop="text_then_speech",
               sampling=S2S_SAMPLING, speech_sampling=S2S_SAMPLING, max_new_tokens=2000),
]}

S2S_DIALOGUE = ("speech2text_token", "speech2text_token_think", "speech2text_token_history")  # template.s2s_reread

_S2S_PROMPT = ("You are OSUM-chat, a speech-to-speech dialogue assistant by ASLP Lab. You understand both the meaning "
               "and paralinguistic cues in speech then respond with appropriate text and emotionally matching "
               "synthetic speech.")
ORIGINAL_SYSTEM_PROMPTS = {
    "text": "You are OSUM-chat, an audio understanding assistant by ASLP Lab. You can transcribe speech "
    "accurately and analyze paralinguistic cues to provide precise text responses.",
    "s2t_chat": "You are OSUM-chat, a speech-to-text dialogue assistant by ASLP Lab. You understand both the "
    "meaning and paralinguistic cues in speech then respond exclusively with appropriate text.",
    "s2t_chat_history": "You are OSUM-chat, a speech-to-text dialogue assistant by ASLP Lab. You understand both the "
    "meaning and paralinguistic cues in speech then respond exclusively with appropriate text.",
    "s2t_chat_think": "You are OSUM-chat, a thinking-enabled speech-to-text dialogue assistant by ASLP Lab. You not "
    "only comprehend the semantic meaning and paralinguistic cues in speech but also engage in deliberate reasoning "
    "to process such information. Based on this thinking process, you then respond exclusively with appropriate text.",
    "text2text": "You are OSUM-chat, a text-to-text dialogue assistant by ASLP Lab. You understand user input "
    "in text then respond exclusively with appropriate text.",
    "text2token": "You are OSUM-chat, a speech synthesis assistant by ASLP Lab. You generate natural and "
    "fluent speech from text input.",
    "text2token_streaming": "You are OSUM-chat, a speech synthesis assistant by ASLP Lab. You generate natural "
    "speech from text input and output both audio and the original text in interleaved format.",
    "speech2text_token": _S2S_PROMPT,
    "speech2text_token_history": _S2S_PROMPT,
    "speech2text_token_think": "You are OSUM-chat, a speech-to-speech dialogue assistant by ASLP Lab. You understand "
    "both the meaning and paralinguistic cues in speech. Before responding, first output your reasoning inside "
    "<think>...</think end>, analyzing the user’s words and vocal cues. Then generate a reply with appropriate text "
    "and emotionally matched synthetic speech.",
    "speech2text_token_streaming": "You are OSUM-chat, a speech-to-speech dialogue assistant by ASLP Lab. You "
    "analyze speech (content + paralinguistic cues) and respond with interleaved text and emotionally-matched "
    "synthetic speech.",
}


@dataclass
class TemplateConfig:
    """Literal markers of a layout; defaults follow the original systems."""

    layout: str = "chatml"  # "osum" (no chat template) or "chatml" (OSUM-EChat)
    eos_token: str = "<|im_end|>"  # "<|endoftext|>" for the osum layout
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"
    speech_codes: int = 4096  # the speech vocabulary (SpeechVocab): S = 4096, input BOS / EOS = 4097 / 4098
    system_prompts: dict[str, str] = field(default_factory=dict)  # output type -> prompt, over the originals
    default_system_prompt: str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    think_start: str = "<think>"
    think_end: str = "<think end>"
    unknown_tag: str = "<&&>"  # a label the data does not know: the model sees "<" ">" and is not trained on it
    # Strides between mel frames and speech embeddings: Whisper conv (2) then adapter convs (2, 2).
    strides: tuple[int, ...] = (2, 2, 2)
    utterance_slots: int = 0  # extra embeddings per clip before its frames (model.utterance_slots)
    # (n_text, n_speech): the S2S dialogue types (S2S_DIALOGUE) follow their whole text reply and its EOS with the
    # speech in chunks of n_speech, each after the next n_text reply tokens read again as context, so the speech
    # says what the text just said (``OutputType.reread``); None: the speech right after the EOS (EChat)
    s2s_reread: tuple[int, int] | None = None


@dataclass
class Sequence:
    """One laid-out sample."""

    input_ids: list[int]
    text_targets: list[int]
    speech_targets: list[int]
    n_speech: list[int]  # embeddings per speech clip, in placeholder order

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_text_targets(self) -> int:
        return sum(t != IGNORE for t in self.text_targets)

    @property
    def n_speech_targets(self) -> int:
        return sum(t != IGNORE for t in self.speech_targets)

    @property
    def n_supervised(self) -> int:
        return self.n_text_targets + self.n_speech_targets



@dataclass
class Reply:
    """A generated reply, parsed: think section, text and speech codes."""

    text: str
    think: str | None = None
    speech: list[int] = field(default_factory=list)


# A laid-out piece: (id, channel) where channel is "text" or "speech" for a trained token, None for context.
_Piece = list[tuple[int, str | None]]


class SequenceBuilder:
    """Lays out prompts and targets as token ids for a given tokenizer and layout."""

    def __init__(self, tokenizer, config: TemplateConfig | None = None,
                 output_types: abc.Mapping[str, OutputType] | None = None):
        self.tok = tokenizer
        self._backend = getattr(tokenizer, "backend_tokenizer", None)  # set for fast (Rust) tokenizers
        self.cfg = config or TemplateConfig()
        self.output_types = dict(output_types or OUTPUT_TYPES)
        if self.cfg.s2s_reread is not None:
            for name in S2S_DIALOGUE:
                self.output_types[name] = replace(self.output_types[name], reread=tuple(self.cfg.s2s_reread))
        self.vocab = SpeechVocab(self.cfg.speech_codes)
        if self.cfg.layout not in ("osum", "chatml"):
            raise ValueError(f"template.layout must be 'osum' or 'chatml', got {self.cfg.layout!r}")
        self.eos_id = self._special_id(self.cfg.eos_token, "template.eos_token")
        if self.cfg.layout == "chatml":
            self._special_id(self.cfg.im_start, "template.im_start")
            self._special_id(self.cfg.im_end, "template.im_end")
        self._cache: dict[str, list[int]] = {}

    def _special_id(self, token: str, key: str) -> int:
        ids = self.tok.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{key}={token!r} is not a single token of this tokenizer (got ids {ids})")
        return ids[0]

    # ------------------------------------------------------------------ text
    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._backend is not None:  # the Rust tokenizer directly: the same ids without the Python wrapper
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self.tok.encode(text, add_special_tokens=False))

    def _encode_cached(self, text: str) -> list[int]:
        if len(self._cache) > 100_000:  # free-form instructions: do not grow without bound
            self._cache.clear()
        if text not in self._cache:
            self._cache[text] = self.encode(text)
        return self._cache[text]

    def speech_length(self, mel_frames: int) -> int:
        """Number of speech embeddings the encoder and adapter make from ``mel_frames`` frames."""
        n = mel_frames
        for s in self.cfg.strides:
            n = math.ceil(n / s)
        return n + self.cfg.utterance_slots

    def system_prompt(self, output_type: str) -> str:
        prompts = {**ORIGINAL_SYSTEM_PROMPTS, **self.cfg.system_prompts}
        return prompts.get(output_type, self.cfg.default_system_prompt)

    def output_type(self, name: str) -> OutputType:
        try:
            return self.output_types[name]
        except KeyError:
            raise ValueError(f"unknown output type {name!r} (known: {sorted(self.output_types)})") from None

    # ------------------------------------------------------------------ pieces
    def _user(self, out: OutputType, parts: list[Part]) -> tuple[_Piece, list[int]]:
        kinds = [PART_KIND[type(p)] for p in parts]
        allowed = iter(out.user)
        if not all(k in allowed for k in kinds):  # a subsequence of the type's user parts, in its order
            raise ValueError(f"output type {out.name!r} takes user parts {list(out.user)} (each optional, in this "
                             f"order), got {kinds}")
        piece: _Piece = []
        n_speech = []
        v = self.vocab
        for p in parts:
            if isinstance(p, Text):
                piece += [(i, None) for i in self._encode_cached(p.text)]  # prompts come from small pools
            elif isinstance(p, Speech):
                piece += [(speech_table_id(v.input_bos), None), *[(SPEECH, None)] * p.n,
                          (speech_table_id(v.input_eos), None)]
                n_speech.append(p.n)
            else:
                piece += [(speech_table_id(r), None) for r in self._speech_rows(p.codes)]
        return piece, n_speech

    def _speech_rows(self, codes: abc.Sequence[int]) -> list[int]:
        bad = [c for c in codes if not 0 <= int(c) < self.vocab.codes]
        if bad:
            raise ValueError(f"speech codes must be in 0..{self.vocab.codes - 1}, got {bad[:5]}")
        return [self.vocab.boundary, *map(int, codes), self.vocab.boundary]

    def _text(self, text: str) -> _Piece:
        """Target text ids; each unknown tag becomes "<" ">" whose ">" is not a target (reference 1.8: the label is
        hidden from loss and attention; the model still learns that a tag stands there)."""
        segments = text.split(self.cfg.unknown_tag)
        piece: _Piece = [(i, "text") for i in self.encode(segments[0])]
        for seg in segments[1:]:
            piece += [(i, "text") for i in self._encode_cached("<")]
            close = self._encode_cached(">")
            piece += [(close[0], None), *[(i, "text") for i in close[1:]]]
            piece += [(i, "text") for i in self.encode(seg)]
        return piece

    def _reply(self, out: OutputType, turn: Turn) -> _Piece:
        """The reply parts ``out`` names, as trained tokens (masked later for history)."""
        think_part: _Piece = []
        if "think" in out.target:  # its opener is context (``_opener``)
            if turn.think is None:
                raise ValueError(f"output type {out.name!r} needs a think section")
            think_part = self._text(f"{turn.think}{self.cfg.think_end}")
        text_part = self._text(turn.text or "") if "text" in out.target else []
        if "eos" in out.target:
            text_part.append((self.eos_id, "text"))
        speech_part: _Piece = []
        if out.speech_out:
            if turn.speech is None:
                raise ValueError(f"output type {out.name!r} needs speech codes in its reply")
            speech_part = [(speech_table_id(r), "speech") for r in self._speech_rows(turn.speech)]
        if out.reread is not None:
            return think_part + text_part + self._reread(text_part, speech_part, *out.reread)
        if out.interleave is None:
            return think_part + text_part + speech_part
        n_text, n_sp = out.interleave
        if len(speech_part) * n_text < len(text_part) * n_sp:
            raise ValueError(f"interleaved output {out.name!r}: {len(speech_part)} speech tokens are too few for "
                             f"{len(text_part)} text tokens at {n_text}:{n_sp}")
        piece: _Piece = []
        t = s = 0
        while t < len(text_part):
            piece += text_part[t : t + n_text] + speech_part[s : s + n_sp]
            t, s = t + n_text, s + n_sp
        return think_part + piece + speech_part[s:]

    @staticmethod
    def _reread(text_part: _Piece, speech_part: _Piece, n_text: int, n_sp: int) -> _Piece:
        """The speech of a reread type: chunks of ``n_sp`` speech tokens, each after the next ``n_text`` reply tokens
        (the EOS excluded) as context; once the text is read, the rest of the speech; once the speech is closed,
        nothing more (generation stops at the closing S)."""
        words = [(i, None) for i, _ in text_part[:-1]]  # the reply's text part ends with its EOS
        piece: _Piece = []
        t = s = 0
        while t < len(words) and s < len(speech_part):
            piece += words[t : t + n_text] + speech_part[s : s + n_sp]
            t, s = t + n_text, s + n_sp
        return piece + speech_part[s:]

    def plan(self, output_type: str) -> dict[str, Any]:
        """The generation plan of ``output_type`` (``osum.models.generation.PhasePlan``): a reread type with a think
        rereads only the reply, after the think's closing marker."""
        out = self.output_type(output_type)
        plan = out.plan()
        if out.reread is not None and "think" in out.target:
            plan["think_end"] = self._special_id(self.cfg.think_end, "template.think_end")
        return plan

    def _opener(self, out: OutputType) -> _Piece:
        """What every reply of ``out`` starts with as context: the think opener of a think type, else nothing."""
        return [(i, None) for i in self._encode_cached(self.cfg.think_start)] if "think" in out.target else []

    def _layout(self, output_type: str, turns: list[Turn], with_target: bool) -> tuple[_Piece, list[int]]:
        out = self.output_type(output_type)
        if not turns:
            raise ValueError("a sample needs at least one turn")
        if len(turns) > 1 and not out.history:
            raise ValueError(f"output type {out.name!r} takes no history ({len(turns) - 1} earlier turns given)")
        c = self.cfg
        if c.layout == "osum" and len(turns) > 1:
            raise ValueError("template.layout=osum has no multi-turn layout; use chatml")
        piece: _Piece = []
        n_speech: list[int] = []
        if c.layout == "chatml":
            piece += [(i, None) for i in self._encode_cached(
                f"{c.im_start}system\n{self.system_prompt(out.name)}{c.im_end}\n{c.im_start}user\n")]
        for k, turn in enumerate(turns):
            last = k == len(turns) - 1
            if k:
                piece += [(i, None) for i in self._encode_cached(f"\n{c.im_start}user\n")]
            user, n = self._user(out, turn.user)
            piece += user
            n_speech += n
            if c.layout == "chatml":
                piece += [(i, None) for i in self._encode_cached(f"{c.im_end}\n{c.im_start}assistant\n")]
            piece += self._opener(out)
            if last and not with_target:
                break
            reply = self._reply(out, turn)
            trained = turn.supervised if turn.supervised is not None else last
            piece += reply if trained else [(i, None) for i, _ in reply]
        return piece, n_speech

    # ------------------------------------------------------------------ public
    def prompt(self, output_type: str, turns: list[Turn]) -> list[int]:
        """Everything before the target (the last turn's reply): the part generation starts from."""
        piece, _ = self._layout(output_type, turns, with_target=False)
        return [i for i, _ in piece]

    def build(self, output_type: str, turns: list[Turn]) -> Sequence:
        """The whole training sequence: history, prompt and target, with shifted targets in two channels."""
        piece, n_speech = self._layout(output_type, turns, with_target=True)
        ids = [i for i, _ in piece]
        first = next((k for k, (_, ch) in enumerate(piece) if ch is not None), None)
        if first is None:
            raise ValueError("a sequence needs at least one target token")
        if first == 0:
            raise ValueError("a sequence needs at least one prompt token before its target")
        text_targets, speech_targets = [IGNORE] * (len(ids) - 1), [IGNORE] * (len(ids) - 1)
        for k in range(first, len(piece)):
            token, channel = piece[k]
            if channel == "text":
                text_targets[k - 1] = token
            elif channel == "speech":
                speech_targets[k - 1] = -token - 2
        return Sequence(ids[:-1], text_targets, speech_targets, n_speech)

    def parse(self, output_type: str, text_ids: abc.Sequence[int], speech_codes: abc.Sequence[int] = ()) -> Reply:
        """A generated reply (text ids before EOS_T, speech codes between the S markers) as think, text, speech."""
        text = self.tok.decode(list(text_ids), skip_special_tokens=False)
        if self.tok.pad_token:
            text = text.replace(self.tok.pad_token, "")
        think = None
        if "think" in self.output_type(output_type).target:
            head, sep, rest = text.partition(self.cfg.think_end)
            if sep:
                # the opener is the prompt's; a model trained when it was a target may still write it
                think, text = head.replace(self.cfg.think_start, "", 1).strip(), rest
        return Reply(text=text.strip(), think=think, speech=list(speech_codes))
