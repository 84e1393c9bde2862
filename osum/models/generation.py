"""One generation loop with a text phase and a speech phase, batched, over a KV cache.

Every output type decodes through :func:`generate`: understanding and chat (text until the text EOS), TTS
(speech from a forced boundary token until the next one) and speech-to-speech (text, then speech), each
optionally in the 6:18 text:speech interleave of the ``*_streaming`` types (reference osum-original.md
sections 1.5, 5.2 and 5.6). A :class:`PhasePlan` says where a row starts, how it switches and when it
stops; a :class:`Sampling` per phase says how the next token is drawn.

Phases (reference 1.5, the original's patched Qwen2):
    text     logits from ``model.text_head``, the token fed back through ``model.text_embed``
    speech   logits from ``model.speech_head`` (codes 0..4095 and the boundary S = 4096), the token fed back
             as row ``code`` of ``model.speech_embed``
A generated token is fed back through the table of the phase that produced it; the text EOS switches a
row to the speech phase for good.

Rows are left-padded with an attention mask and ``position_ids = cumsum(mask) - 1`` so that every row
computes what it would alone; a finished row stays in the batch and its outputs are ignored. Greedy text
decoding gives the tokens of transformers' ``generate(inputs_embeds=...)`` (``SpeechLLM.generate``), and
the logits processing follows transformers' order: repetition penalty, temperature, top-k, top-p.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from osum.template import OutputType, speech_table_id

TEXT, SPEECH_PHASE, REREAD = "text", "speech", "reread"  # phases: REREAD tokens are fed, not predicted
STOP_RULES = ("text_eos", "speech_end", "text_then_speech")


def _from_plain(cls, data: Mapping[str, Any]):
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)} (known: {sorted(names)})")
    return cls(**dict(data))


@dataclass(frozen=True)
class Sampling:
    """How one phase draws its next token; greedy (argmax after the repetition penalty) unless ``do_sample``."""

    do_sample: bool = False
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.0  # over the tokens this row generated in this phase

    def __post_init__(self):
        if self.top_k < 0 or not 0.0 < self.top_p <= 1.0 or self.temperature <= 0 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling settings {self}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sampling:
        return _from_plain(cls, data)


GREEDY = Sampling()

@dataclass(frozen=True)
class PhasePlan:
    """Where a row starts, how it switches phase and when it stops.

    ``stop``: "text_eos" (text outputs: stop at the text EOS), "speech_end" (TTS: the prompt is followed by a
    forced S input, the row generates speech and stops at the next S), "text_then_speech" (S2S: text until
    the text EOS, then speech; stop once S c1..cn S is closed). ``interleave=(6, 18)``: 6 text tokens then
    18 speech tokens, repeated, until the text EOS; then speech only (the ``*_streaming`` layouts, 5.2).
    ``reread=(2, 10)``: after the text EOS, the reply's text tokens (after ``think_end`` when given) are fed again
    2 at a time, each time followed by 10 generated speech tokens, until they run out; then speech only
    (``template.s2s_reread``).
    """

    start_phase: str = TEXT
    interleave: tuple[int, int] | None = None
    reread: tuple[int, int] | None = None
    think_end: int | None = None
    stop: str = "text_eos"
    max_new_tokens: int = 512

    def __post_init__(self):
        if self.stop not in STOP_RULES:
            raise ValueError(f"PhasePlan.stop must be one of {STOP_RULES}, got {self.stop!r}")
        want = SPEECH_PHASE if self.stop == "speech_end" else TEXT
        if self.start_phase != want:
            raise ValueError(f"PhasePlan.stop={self.stop!r} starts in the {want} phase, got {self.start_phase!r}")
        if self.interleave is not None:
            if self.stop != "text_then_speech":
                raise ValueError("PhasePlan.interleave needs stop='text_then_speech' (text and speech both come out)")
            if len(self.interleave) != 2 or min(self.interleave) < 1:
                raise ValueError(f"PhasePlan.interleave must be two positive counts, got {self.interleave!r}")
            object.__setattr__(self, "interleave", (int(self.interleave[0]), int(self.interleave[1])))
        if self.reread is not None:
            if self.stop != "text_then_speech" or self.interleave is not None:
                raise ValueError("PhasePlan.reread needs stop='text_then_speech' and no interleave")
            if len(self.reread) != 2 or min(self.reread) < 1:
                raise ValueError(f"PhasePlan.reread must be two positive counts, got {self.reread!r}")
            object.__setattr__(self, "reread", (int(self.reread[0]), int(self.reread[1])))
        if self.max_new_tokens < 1:
            raise ValueError(f"PhasePlan.max_new_tokens must be positive, got {self.max_new_tokens}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhasePlan:
        data = dict(data)
        for key in ("interleave", "reread"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return _from_plain(cls, data)


def settings_for(output_type: OutputType) -> tuple[PhasePlan, Sampling, Sampling]:
    """The plan and the (text, speech) sampling of an output type of the template's registry (reference 5.6)."""
    speech = output_type.speech_sampling
    return (PhasePlan.from_dict(output_type.plan()), Sampling.from_dict(output_type.sampling),
            Sampling.from_dict(speech) if speech is not None else GREEDY)


@dataclass
class Generated:
    """One row's result. ``tokens[i]`` is a text id or a speech code (0..4096) as ``phases[i]`` says."""

    text_ids: list[int]  # text tokens before the text EOS (EOS excluded)
    speech_codes: list[int]  # codes between the opening S (forced for TTS) and the closing S, markers excluded
    tokens: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    stop_reason: str = "max_tokens"  # "eos" | "speech_end" | "max_tokens"


@dataclass
class _Row:
    """Phase state of one row while it generates."""

    phase: str
    boundaries: int  # S markers seen so far (the forced one of TTS included)
    in_chunk: int = 0  # tokens of the current interleave (or reread) chunk
    to_reread: list[int] = field(default_factory=list)  # reply tokens still to be fed again (``PhasePlan.reread``)
    text_done: bool = False
    done: bool = False
    tokens: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    stop_reason: str = "max_tokens"


def process_logits(logits: torch.Tensor, seen: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Repetition penalty over ``seen`` (bool, same shape), then for sampling temperature, top-k and top-p
    (transformers' order and rules); float32 scores, filtered entries at -inf."""
    scores = logits.float()
    if sampling.repetition_penalty != 1.0:
        p = sampling.repetition_penalty
        scores = torch.where(seen, torch.where(scores > 0, scores / p, scores * p), scores)
    if not sampling.do_sample:
        return scores
    if sampling.temperature != 1.0:
        scores = scores / sampling.temperature
    if 0 < sampling.top_k < scores.shape[-1]:
        kth = torch.topk(scores, sampling.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        remove = sorted_scores.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
        remove[..., -1] = False  # keep at least the best token
        scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return scores


def next_tokens(logits: torch.Tensor, seen: torch.Tensor, sampling: Sampling,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, V) logits -> (N,) token ids under ``sampling``."""
    scores = process_logits(logits, seen, sampling)
    if not sampling.do_sample:
        return scores.argmax(-1)
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)


def _left_pad(prompts: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long, device=device)  # pad id 0: masked, never attended
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
        mask[i, width - len(p):] = 1
    return ids, mask


def _cache_argument(decoder: nn.Module) -> str:
    """The KV-cache keyword of this transformers version: ``cache`` (>= 5.2x) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _advance(row: _Row, token: int, plan: PhasePlan, eos_id: int, boundary: int) -> None:
    """Record ``token`` (made in ``row.phase``) and move the row's phase state on."""
    row.tokens.append(token)
    row.phases.append(row.phase)
    if row.phase == TEXT:
        if token == eos_id:
            row.text_done = True
            if plan.stop == "text_eos":
                row.done, row.stop_reason = True, "eos"
            else:
                row.phase, row.in_chunk = SPEECH_PHASE, 0
                if plan.reread is not None:
                    row.to_reread = _reply_ids(row, eos_id, plan.think_end)
                    row.phase = REREAD if row.to_reread else SPEECH_PHASE
        elif plan.interleave is not None:
            row.in_chunk += 1
            if row.in_chunk == plan.interleave[0]:
                row.phase, row.in_chunk = SPEECH_PHASE, 0
    elif row.phase == REREAD:
        row.in_chunk += 1
        if row.in_chunk == plan.reread[0] or not row.to_reread:
            row.phase, row.in_chunk = SPEECH_PHASE, 0
    else:
        if token == boundary:
            row.boundaries += 1
            if row.boundaries >= 2:
                row.done, row.stop_reason = True, "speech_end"
        if plan.reread is not None and row.to_reread and not row.done:
            row.in_chunk += 1
            if row.in_chunk == plan.reread[1]:
                row.phase, row.in_chunk = REREAD, 0
        if plan.interleave is not None and not row.text_done and not row.done:
            row.in_chunk += 1
            if row.in_chunk == plan.interleave[1]:
                row.phase, row.in_chunk = TEXT, 0
    if not row.done and len(row.tokens) >= plan.max_new_tokens:
        row.done = True


def _reply_ids(row: _Row, eos_id: int, think_end: int | None) -> list[int]:
    """The row's text tokens before the EOS, after the think's closing marker when there is one."""
    text = [t for t, ph in zip(row.tokens, row.phases) if ph == TEXT and t != eos_id]
    if think_end is not None and think_end in text:
        text = text[len(text) - text[::-1].index(think_end) :]
    return text


def _result(row: _Row, eos_id: int, boundary: int, forced_boundary: bool) -> Generated:
    text = [t for t, ph in zip(row.tokens, row.phases) if ph == TEXT]
    if eos_id in text:
        text = text[: text.index(eos_id)]
    codes, opened = [], forced_boundary
    for t, ph in zip(row.tokens, row.phases):
        if ph != SPEECH_PHASE:
            continue
        if t == boundary:
            if opened:
                break
            opened = True
        elif opened:
            codes.append(t)
    return Generated(text_ids=text, speech_codes=codes, tokens=row.tokens, phases=row.phases,
                     stop_reason=row.stop_reason)


@torch.no_grad()
def generate(model: nn.Module, prompts: list[list[int]], speech: torch.Tensor | None,
             speech_lengths: torch.Tensor | None, plan: PhasePlan, eos_id: int,
             text_sampling: Sampling = GREEDY, speech_sampling: Sampling = GREEDY,
             generator: torch.Generator | None = None) -> list[Generated]:
    """Continue each laid-out prompt (ids as in ``osum.template``) under ``plan``, one :class:`Generated` a row.

    ``model`` is a ``SpeechLLM``: ``embed``, ``decoder``, ``text_head``, ``text_embed``, ``speech_head``,
    ``speech_embed``. ``speech`` (N, L, H) and ``speech_lengths`` fill the prompts' speech placeholders in
    order, as ``SpeechLLM.embed`` does. ``generator`` makes sampling reproducible (on the model's device).
    """
    device = model.text_embed.weight.device
    boundary = model.speech_head.out_features - 1  # S = speech_token_num - 1 = 4096
    forced = plan.stop == "speech_end"
    if forced:  # TTS: the first input after the prompt is the S embedding
        prompts = [list(p) + [speech_table_id(boundary)] for p in prompts]
    ids, mask = _left_pad(prompts, device)
    rows = [_Row(phase=plan.start_phase, boundaries=int(forced)) for _ in prompts]
    n = len(rows)
    n_text = model.text_head.out_features
    seen = {TEXT: torch.zeros(n, n_text, dtype=torch.bool, device=device),
            SPEECH_PHASE: torch.zeros(n, boundary + 1, dtype=torch.bool, device=device)}
    heads = {TEXT: (model.text_head, text_sampling), SPEECH_PHASE: (model.speech_head, speech_sampling)}

    emb = model.embed(ids, speech, speech_lengths)
    bias = model.voice_label_bias(ids, speech, speech_lengths)  # voice fusion: label-token logits per row, or None
    cache_name = _cache_argument(model.decoder)
    cache = None  # the decoder makes its DynamicCache (with its config's layer types) on the first call
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    while True:
        out = model.decoder(inputs_embeds=emb, attention_mask=mask, position_ids=positions, use_cache=True,
                            **{cache_name: cache})
        cache = getattr(out, cache_name)
        hidden = out.last_hidden_state[:, -1]
        tokens = torch.zeros(n, dtype=torch.long, device=device)
        is_speech = torch.zeros(n, dtype=torch.bool, device=device)
        for i, r in enumerate(rows):  # a reread token is fed, not predicted
            if not r.done and r.phase == REREAD:
                tokens[i] = r.to_reread.pop(0)
        for phase, (head, sampling) in heads.items():
            idx = [i for i, r in enumerate(rows) if not r.done and r.phase == phase]
            if not idx:
                continue
            sel = torch.tensor(idx, device=device)
            logits = head(hidden[sel])
            if phase == TEXT and bias is not None:  # voice fusion (SpeechLLM.voice_label_bias)
                logits = logits + bias[sel].to(logits.dtype)
            tokens[sel] = next_tokens(logits, seen[phase][sel], sampling, generator)
            seen[phase][sel, tokens[sel]] = True
            is_speech[sel] = phase == SPEECH_PHASE
        for i, token in enumerate(tokens.tolist()):
            if not rows[i].done:
                _advance(rows[i], token, plan, eos_id, boundary)
        if all(r.done for r in rows):
            break
        # The next input of each row: its token through the table of the phase that made it.
        emb = torch.zeros(n, 1, hidden.shape[-1], dtype=emb.dtype, device=device)
        for table, chosen in ((model.text_embed, ~is_speech), (model.speech_embed, is_speech)):
            if bool(chosen.any()):
                emb[chosen, 0] = table(tokens[chosen]).to(emb.dtype)
        mask = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
        positions = mask.sum(-1, keepdim=True) - 1
    return [_result(r, eos_id, boundary, forced) for r in rows]
