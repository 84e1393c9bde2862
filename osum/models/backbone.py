"""SpeechLLM: the one backbone of every stage (encoder -> adapter -> spliced into a causal LLM).

The backbone knows nothing of Lightning, Hydra or file formats. It embeds the token ids laid out by
``osum.template`` (filling the speech placeholders with adapter outputs), runs the text head and the
speech head each only at its own supervised positions, and returns a loss sum and a token count per
head, so that the caller can normalise each by its supervised tokens of the whole (global) batch. It
takes tensors; unpacking a loader batch (and computing log-mel on the device) is the stage's job. A speech-token table (codes plus marker rows) and a
speech head exist from the start (reference section 1.5) so that later stages and original checkpoints
map onto the same module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList

from osum.models.adapter import Adapter
from osum.models.ctc import EmbeddingCTC
from osum.models.encoder import WhisperEncoder, length_groups, lengths_to_mask
from osum.models.freezing import apply_freezing, is_frozen
from osum.models.labels import LabelChoices, label_bias
from osum.models.llm import apply_lora, base_model, build_llm, trainable_token_ids
from osum.models.utterance import UtteranceEmbedding
from osum.template import IGNORE, SPEECH, SpeechVocab
from osum.text import load_tokenizer


@dataclass
class HeadLoss:
    """One head's summed cross-entropy over its supervised positions, their count, the correct argmaxes, and
    the same per sample (for per-task logging)."""

    loss_sum: torch.Tensor
    n_tokens: torch.Tensor
    n_correct: torch.Tensor
    per_sample_loss: torch.Tensor
    per_sample_tokens: torch.Tensor
    per_sample_correct: torch.Tensor
    token_targets: torch.Tensor  # per supervised position (detached): its target, cross-entropy and argmax hit
    token_loss: torch.Tensor
    token_hits: torch.Tensor
    choice_loss_sum: torch.Tensor | None = None  # the label-choice loss (``LabelChoices``): its sum and count
    n_choices: torch.Tensor | None = None

    @classmethod
    def empty(cls, batch: int, like: torch.Tensor) -> HeadLoss:
        zeros, none = like.new_zeros(batch, dtype=torch.float32), like.new_zeros(0, dtype=torch.float32)
        return cls(zeros.sum(), zeros.sum().long(), zeros.sum(), zeros, zeros.long(), zeros, none.long(), none, none,
                   zeros.sum(), zeros.sum().long())


class SpeechLLM(nn.Module):
    def __init__(self, encoder: WhisperEncoder, adapter: Adapter, llm: nn.Module, speech_token_num: int = 4097,
                 encoder_cache: bool = False, ctc_weight: float = 0.0, encoder_sub_batches: int = 1,
                 utterance_embedding: bool = False, utterance_last: bool = True, voice_fusion: bool = False):
        super().__init__()
        self.encoder, self.adapter, self.llm = encoder, adapter, llm
        hidden = base_model(llm).config.hidden_size
        self.speech_embed = nn.Embedding(speech_token_num + 2, hidden)  # codes, boundary, input BOS/EOS
        self.speech_head = nn.Linear(hidden, speech_token_num)
        std = getattr(base_model(llm).config, "initializer_range", 0.02)  # the scale of the LLM's own embeddings
        nn.init.normal_(self.speech_embed.weight, std=std)
        nn.init.normal_(self.speech_head.weight, std=std)
        nn.init.zeros_(self.speech_head.bias)
        self.use_encoder_cache = encoder_cache
        self.encoder_sub_batches = encoder_sub_batches  # encoder calls per batch, each on samples of similar length
        self._encoder_cache: dict[str, torch.Tensor] = {}
        self.ctc_weight = ctc_weight
        self.ctc = EmbeddingCTC(hidden) if ctc_weight > 0 else None  # training aid only: unused in generation
        # Who is speaking and how is an utterance-level property that the adapter's frame path loses once the
        # transcript loss, ~93% of the tokens, shapes it: an optional extra embedding per clip keeps it apart.
        self.utterance = UtteranceEmbedding(encoder.d_model, hidden) if utterance_embedding else None
        self.utterance_last = utterance_last  # after the clip's frames (next to the answer) instead of before them
        if voice_fusion and self.utterance is None:
            raise ValueError("model.voice_fusion adds the utterance embedding's label scores: set model.utterance_slots: 1")
        self.voice_fusion = voice_fusion
        self.fusion_label_ids: torch.Tensor | None = None  # (K, M) label token ids per kind (use_label_ids)

    def use_label_ids(self, ids: torch.Tensor | None) -> None:
        """The label tags' token ids per kind (``LabelChoices.ids``), which ``voice_fusion`` biases."""
        self.fusion_label_ids = ids

    def voice_label_bias(self, input_ids: torch.Tensor, speech: torch.Tensor | None,
                         speech_lengths: torch.Tensor | None) -> torch.Tensor | None:
        """(B, V) text-logit bias of ``voice_fusion`` (``osum.models.labels.label_bias``) from each sample's
        utterance embedding, read back from its slot in ``speech``; None when off or when a row of ``input_ids``
        holds other than one clip (dialogue history: the bias is for single-clip understanding)."""
        if not self.voice_fusion or self.fusion_label_ids is None or speech is None:
            return None
        slots = input_ids == SPEECH
        clips_per_row = (slots[:, 1:] & ~slots[:, :-1]).sum(1) + slots[:, 0]  # runs of placeholders
        if not bool((clips_per_row == 1).all()):
            return None
        rows = torch.arange(speech.shape[0], device=speech.device)
        voice = speech[rows, speech_lengths - 1] if self.utterance_last else speech[:, 0]
        return label_bias(voice, self.fusion_label_ids, self.text_embed.weight)

    # ------------------------------------------------------------------ pieces of the LLM
    @property
    def decoder(self) -> nn.Module:
        return base_model(self.llm).get_decoder()

    @property
    def text_head(self) -> nn.Module:
        return base_model(self.llm).get_output_embeddings()

    @property
    def text_embed(self) -> nn.Module:
        return base_model(self.llm).get_input_embeddings()

    # ------------------------------------------------------------------ speech
    def _run_encoder(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder outputs (B, ceil(T/2), d) and lengths, computed in up to ``encoder_sub_batches`` calls on
        samples of similar length, each trimmed to its longest: the same numbers as one call, fewer padded frames."""
        frozen = is_frozen(self.encoder)
        if frozen:
            self.encoder.eval()  # a frozen encoder runs without dropout and without autograd state
        groups = length_groups(mel_lengths.tolist(), self.encoder_sub_batches)
        with torch.no_grad() if frozen else contextlib.nullcontext():
            if len(groups) == 1:
                return self.encoder(mel[:, : int(mel_lengths.max())], mel_lengths)
            out = None
            for group in groups:
                idx = torch.tensor(group, device=mel.device)
                part, _ = self.encoder(mel[idx, : int(mel_lengths[idx].max())], mel_lengths[idx])
                if out is None:
                    out = part.new_zeros(mel.shape[0], (mel.shape[1] + 1) // 2, part.shape[2])
                out[idx, : part.shape[1]] = part
            return out, self.encoder.output_lengths(mel_lengths)

    def cached_clip_keys(self) -> Container[str]:
        """The clips whose encoder output is kept and used (``encoder_cache`` with a frozen encoder): their log-mel
        is not needed."""
        return self._encoder_cache if self.use_encoder_cache and is_frozen(self.encoder) else ()

    def _encoder_with_cache(self, mel, mel_lengths, keys):
        """Frozen-encoder outputs are deterministic per sample: reuse them across epochs by key."""
        missing = [i for i, k in enumerate(keys) if k not in self._encoder_cache]
        if missing:
            idx = torch.tensor(missing, device=mel.device)
            out, lens = self._run_encoder(mel[idx], mel_lengths[idx])
            for row, i in enumerate(missing):
                self._encoder_cache[keys[i]] = out[row, : lens[row]].to(torch.float16).cpu()
        rows = [self._encoder_cache[k] for k in keys]
        lens = torch.tensor([r.shape[0] for r in rows], device=mel.device)
        out = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(device=mel.device, dtype=mel.dtype)
        return out, lens

    def encode_speech(self, mel: torch.Tensor, mel_lengths: torch.Tensor,
                      keys: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) log-mel -> (B, S, hidden) speech embeddings and their lengths; with an utterance
        embedding, each clip's last (or first) embedding is its pooled encoder output (``osum.models.utterance``)."""
        speech, lengths, _ = self.encode_speech_and_voice(mel, mel_lengths, keys)
        return speech, lengths

    def encode_speech_and_voice(self, mel: torch.Tensor, mel_lengths: torch.Tensor, keys: list[str] | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``encode_speech`` and each clip's utterance embedding (N, hidden), or None without one."""
        if self.use_encoder_cache and keys is not None and is_frozen(self.encoder):
            enc, enc_lengths = self._encoder_with_cache(mel, mel_lengths, keys)
        else:
            enc, enc_lengths = self._run_encoder(mel, mel_lengths)
        speech, lengths = self.adapter(enc, enc_lengths)
        if self.utterance is None:
            return speech, lengths, None
        voice = self.utterance(enc, enc_lengths).to(speech.dtype)
        if not self.utterance_last:
            return torch.cat([voice[:, None], speech], 1), lengths + 1, voice
        rows = torch.arange(len(lengths), device=speech.device)
        out = torch.cat([speech, torch.zeros_like(speech[:, :1])], 1).index_put((rows, lengths), voice)
        return out, lengths + 1, voice

    # ------------------------------------------------------------------ embedding of laid-out ids
    def check_vocab(self, vocab: SpeechVocab) -> None:
        """The speech table and head have the sizes the template's speech vocabulary needs."""
        vocab.check(self.speech_embed.num_embeddings, self.speech_head.out_features)

    def embed(self, input_ids: torch.Tensor, speech: torch.Tensor | None,
              speech_lengths: torch.Tensor | None) -> torch.Tensor:
        """Token ids (text >= 0, SPEECH placeholders, speech-table rows <= -2) -> input embeddings. A row outside
        the speech table raises (no clamping)."""
        emb = self.text_embed(input_ids.clamp(min=0))  # placeholder and row positions are replaced below
        is_row = input_ids <= -2
        if bool(is_row.any()):
            rows = torch.where(is_row, -input_ids - 2, 0)
            emb = torch.where(is_row[..., None], self.speech_embed(rows).to(emb.dtype), emb)
        slots = input_ids == SPEECH
        if speech is not None:
            packed = speech[lengths_to_mask(speech_lengths, speech.shape[1])]
            if packed.shape[0] != int(slots.sum()):
                raise ValueError(f"{int(slots.sum())} speech placeholders but {packed.shape[0]} speech embeddings: "
                                 "the template strides do not match the encoder and adapter")
            emb = emb.masked_scatter(slots[..., None], packed.to(emb.dtype))
        elif bool(slots.any()):
            raise ValueError("the batch has speech placeholders but no speech")
        return emb

    # ------------------------------------------------------------------ training
    @staticmethod
    def _head_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, sel: torch.Tensor,
                   choices: LabelChoices | None = None, bias: torch.Tensor | None = None) -> HeadLoss:
        """Cross-entropy of ``head`` at the selected positions only (never the whole vocabulary everywhere), with
        ``bias`` (B, V) added to each sample's logits, and with ``choices`` the label-choice loss at its label
        positions."""
        logits = head(hidden[sel])
        sample_of_token = sel.nonzero()[:, 0]
        if bias is not None:
            logits = logits + bias[sample_of_token].to(logits.dtype)
        ce = F.cross_entropy(logits.float(), targets[sel], reduction="none")
        choice = choices.loss(logits, targets[sel]) if choices is not None else (None, None)
        per_sample = torch.zeros(targets.shape[0], device=ce.device).index_add_(0, sample_of_token, ce.detach())
        hits = (logits.argmax(-1) == targets[sel]).float()
        per_sample_correct = torch.zeros_like(per_sample).index_add_(0, sample_of_token, hits)
        return HeadLoss(ce.sum(), sel.sum(), hits.sum(), per_sample, sel.sum(1), per_sample_correct, targets[sel],
                        ce.detach(), hits, *choice)

    def forward(self, input_ids: torch.Tensor, text_targets: torch.Tensor, speech_targets: torch.Tensor | None = None,
                mel: torch.Tensor | None = None, mel_lengths: torch.Tensor | None = None,
                clip_keys: list[str] | None = None, ctc_targets: torch.Tensor | None = None,
                ctc_lengths: torch.Tensor | None = None, label_choices: LabelChoices | None = None) -> dict[str, Any]:
        """Summed cross-entropy per head (``text``, ``speech``: a ``HeadLoss`` each, the head run only at its own
        positions), with ``ctc_weight`` the auxiliary CTC loss (mean per transcript token) as ``ctc_loss``, and
        ``used``: the names of the optional parts that ran (encoder, adapter, ctc, speech_embed, text_head,
        speech_head; see ``idle_parameters``).

        ``input_ids``, ``text_targets``, ``speech_targets``: (B, L), laid out by ``osum.template``; ``mel``
        (N, T, n_mels) and ``mel_lengths`` (N,): one row per speech clip, in placeholder order; ``clip_keys``
        name the clips for the frozen-encoder cache; ``ctc_targets`` (N, U) / ``ctc_lengths`` (N,) per clip;
        ``label_choices``: also the label-choice loss of the text head (``HeadLoss.choice_loss_sum``). With an
        utterance embedding, ``voice``: each clip's (N, hidden), for the voice-label loss (``LabelChoices.voice_loss``)."""
        speech = speech_lengths = None
        out: dict[str, Any] = {"used": set()}
        if mel is not None:
            speech, speech_lengths, voice = self.encode_speech_and_voice(mel, mel_lengths, clip_keys)
            out["used"] |= {"encoder", "adapter", "utterance"}
            if voice is not None:
                out["voice"] = voice
            if self.ctc is not None and ctc_targets is not None:
                frames, frame_lengths = speech, speech_lengths
                if voice is not None:  # CTC aligns the frames only, not the clip's utterance embedding
                    frames, frame_lengths = (speech if self.utterance_last else speech[:, 1:]), speech_lengths - 1
                out["ctc_loss"], out["ctc_tokens"] = self.ctc(
                    frames, frame_lengths, self.text_embed.weight, ctc_targets, ctc_lengths)
                out["used"].add("ctc")
        emb = self.embed(input_ids, speech, speech_lengths)
        bias = self.voice_label_bias(input_ids, speech, speech_lengths)
        if bool((input_ids <= -2).any()):
            out["used"].add("speech_embed")
        # Padding is only at the right: causal attention never lets a real token see it, so no mask is needed.
        hidden = self.decoder(inputs_embeds=emb, use_cache=False).last_hidden_state
        for name, head, targets in (("text", self.text_head, text_targets), ("speech", self.speech_head, speech_targets)):
            sel = None if targets is None else targets != IGNORE
            if sel is not None and bool(sel.any()):
                out[name] = self._head_loss(head, hidden, targets, sel, *((label_choices, bias) if name == "text"
                                                                          else (None, None)))
                out["used"].add(f"{name}_head")
            else:
                out[name] = HeadLoss.empty(input_ids.shape[0], hidden)
        return out

    def idle_parameters(self, used: set[str]) -> list[nn.Parameter]:
        """Trainable parameters of the optional parts that did not run (and are not shared with one that did)."""
        parts = {"encoder": self.encoder, "adapter": self.adapter, "utterance": self.utterance, "ctc": self.ctc,
                 "speech_embed": self.speech_embed,
                 "text_head": self.text_head, "speech_head": self.speech_head}
        busy = {id(p) for name in used if parts[name] is not None for p in parts[name].parameters()}
        busy |= {id(p) for p in self.llm.parameters()} - {id(p) for p in self.text_head.parameters()}
        busy |= {id(p) for p in self.text_embed.parameters()}  # every input is embedded (tied heads stay busy)
        idle = {}
        for name, module in parts.items():
            if name in used or module is None:
                continue
            idle.update({id(p): p for p in module.parameters() if p.requires_grad and id(p) not in busy})
        return list(idle.values())

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prompts: list[list[int]], speech: torch.Tensor | None, speech_lengths: torch.Tensor | None,
                 eos_id: int, pad_id: int, max_new_tokens: int = 128, num_beams: int = 1,
                 **generate_kwargs: Any) -> list[list[int]]:
        """Continue each laid-out prompt; ``speech[i]`` fills the placeholders of ``prompts[i]``."""
        device = self.text_embed.weight.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding for generation only
            ids[i, width - len(p):] = torch.tensor(p, device=device)
            mask[i, width - len(p):] = 1
        emb = self.embed(ids, speech, speech_lengths)
        bias = self.voice_label_bias(ids, speech, speech_lengths)
        if bias is not None:
            generate_kwargs["logits_processor"] = LogitsProcessorList([AddRowBias(bias)])
        out = self.llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=max_new_tokens,
                                num_beams=num_beams, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id,
                                **generate_kwargs)
        results = []
        for row in out.tolist():
            row = row[width:] if len(row) > max_new_tokens else row  # some versions return the prompt too
            results.append(row[: row.index(eos_id)] if eos_id in row else row)
        return results


class AddRowBias(LogitsProcessor):
    """Adds row ``i``'s bias (B, V) to the scores of prompt ``i`` (each of its beams) at every generated step."""

    def __init__(self, bias: torch.Tensor):
        self.bias = bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bias = self.bias.repeat_interleave(scores.shape[0] // self.bias.shape[0], 0)
        return scores + bias[:, : scores.shape[1]].to(scores.dtype)


def _utterance_last(position: str) -> bool:
    if position not in ("first", "last"):
        raise ValueError(f"model.utterance_position must be 'first' or 'last', got {position!r}")
    return position == "last"


def build_backbone(cfg: Mapping[str, Any]) -> tuple[SpeechLLM, Any]:
    """SpeechLLM and tokenizer from the ``model`` config group (a plain mapping)."""
    llm_cfg = cfg["llm"]
    tok_path = llm_cfg.get("tokenizer") or llm_cfg.get("path")
    if not tok_path:
        raise ValueError("model.llm.tokenizer (or model.llm.path) must name a local tokenizer folder")
    tokenizer = load_tokenizer(tok_path)
    enc_cfg = cfg["encoder"]
    if enc_cfg.get("path"):
        encoder = WhisperEncoder.from_pretrained(enc_cfg["path"], strict=enc_cfg.get("strict", True),
                                                 gradient_checkpointing=enc_cfg.get("gradient_checkpointing", False))
    else:
        encoder = WhisperEncoder(**dict(enc_cfg["config"]),
                                 gradient_checkpointing=enc_cfg.get("gradient_checkpointing", False))
    llm = build_llm(llm_cfg.get("path"), llm_cfg.get("config"), vocab_size=len(tokenizer),
                    dtype=llm_cfg.get("dtype", "float32"),
                    attn_implementation=llm_cfg.get("attn_implementation", "sdpa"), tokenizer=tokenizer)
    if llm_cfg.get("gradient_checkpointing"):
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = llm_cfg.get("lora") or {}
    if lora.get("enabled"):
        llm = apply_lora(llm, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                         target_modules=list(lora["target_modules"]),
                         trainable_tokens=trainable_token_ids(tokenizer, lora.get("trainable_tokens")))
    hidden = base_model(llm).config.hidden_size
    a = dict(cfg["adapter"])
    adapter = Adapter(d_enc=encoder.d_model, d_llm=hidden, d_model=a.get("d_model", encoder.d_model),
                      n_layers=a["n_layers"], n_heads=a["n_heads"], ffn_dim=a["ffn_dim"], dropout=a["dropout"],
                      strides=tuple(a["strides"]))
    model = SpeechLLM(encoder, adapter, llm, speech_token_num=cfg["speech_token_num"],
                      encoder_cache=cfg.get("encoder_cache", False), ctc_weight=float(cfg.get("ctc_weight", 0.0)),
                      encoder_sub_batches=int(cfg.get("encoder_sub_batches", 1)),
                      utterance_embedding=bool(cfg.get("utterance_slots", 0)),
                      utterance_last=_utterance_last(cfg.get("utterance_position", "last")),
                      voice_fusion=bool(cfg.get("voice_fusion", False)))
    apply_freezing(model, list(cfg.get("freeze") or []), list(cfg.get("unfreeze") or []))
    return model, tokenizer
