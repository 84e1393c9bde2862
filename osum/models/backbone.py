"""SpeechLLM: the one backbone of every stage (encoder -> adapter -> spliced into a causal LLM).

The backbone knows nothing of Lightning, Hydra or file formats. It embeds the token ids laid out by
``osum.template`` (filling the speech placeholders with adapter outputs), applies the text head only at
supervised positions, and returns summed losses so that the caller can normalise by the number of
supervised tokens of the whole (global) batch. A speech-token table (codes plus marker rows) and a
speech head exist from the start (reference section 1.5) so that later stages and original checkpoints
map onto the same module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from osum.data.features import apply_spec_masks, log_mel_batch
from osum.models.adapter import Adapter
from osum.models.ctc import EmbeddingCTC
from osum.models.encoder import WhisperEncoder, length_groups, lengths_to_mask
from osum.models.freezing import apply_freezing, is_frozen
from osum.models.llm import apply_lora, base_model, build_llm
from osum.template import IGNORE, SPEECH
from osum.text import load_tokenizer


class SpeechLLM(nn.Module):
    def __init__(self, encoder: WhisperEncoder, adapter: Adapter, llm: nn.Module, speech_token_num: int = 4097,
                 encoder_cache: bool = False, ctc_weight: float = 0.0, encoder_sub_batches: int = 1):
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

    def speech_features(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The batch's log-mel (B, T, n_mels) and frame counts: as the loader made them, or computed here on
        the batch's device from its waveforms (``data.features: model``, float32 even under autocast), with
        the SpecAugment masks the loader drew applied; ``None`` for a text-only batch."""
        if batch.get("mel") is not None:
            return batch["mel"], batch["mel_lengths"]
        if batch.get("audio") is None:
            return None
        audio = batch["audio"]
        with torch.autocast(device_type=audio.device.type, enabled=False):
            mel, lengths = log_mel_batch(audio, batch["audio_lengths"], self.encoder.n_mels)
            if batch.get("spec_masks") is not None:
                mel = apply_spec_masks(mel, batch["spec_masks"])
        return mel, lengths

    def encode_speech(self, mel: torch.Tensor, mel_lengths: torch.Tensor,
                      keys: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) log-mel -> (B, S, hidden) speech embeddings and their lengths."""
        if self.use_encoder_cache and keys is not None and is_frozen(self.encoder):
            enc, enc_lengths = self._encoder_with_cache(mel, mel_lengths, keys)
        else:
            enc, enc_lengths = self._run_encoder(mel, mel_lengths)
        return self.adapter(enc, enc_lengths)

    # ------------------------------------------------------------------ embedding of laid-out ids
    def embed(self, input_ids: torch.Tensor, speech: torch.Tensor | None,
              speech_lengths: torch.Tensor | None) -> torch.Tensor:
        """Token ids (text >= 0, SPEECH placeholders, speech-table rows <= -2) -> input embeddings."""
        text = self.text_embed(input_ids.clamp(min=0))
        rows = (-input_ids - 2).clamp(min=0, max=self.speech_embed.num_embeddings - 1)
        emb = torch.where((input_ids <= -2)[..., None], self.speech_embed(rows).to(text.dtype), text)
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
    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Summed cross-entropy over supervised tokens, plus per-sample sums for per-task logging, and
        with ``ctc_weight`` the auxiliary CTC loss (mean per transcript token) as ``ctc_loss``."""
        speech = speech_lengths = None
        extra = {}
        features = self.speech_features(batch)
        if features is not None:
            speech, speech_lengths = self.encode_speech(*features, batch.get("keys"))
            if self.ctc is not None and batch.get("ctc_targets") is not None:
                extra["ctc_loss"], extra["ctc_tokens"] = self.ctc(
                    speech, speech_lengths, self.text_embed.weight, batch["ctc_targets"], batch["ctc_lengths"])
        emb = self.embed(batch["input_ids"], speech, speech_lengths)
        # Padding is only at the right: causal attention never lets a real token see it, so no mask is needed.
        hidden = self.decoder(inputs_embeds=emb, use_cache=False).last_hidden_state
        targets = batch["targets"]
        sel = targets != IGNORE
        logits = self.text_head(hidden[sel])
        ce = F.cross_entropy(logits.float(), targets[sel], reduction="none")
        sample_of_token = sel.nonzero()[:, 0]
        per_sample = torch.zeros(targets.shape[0], device=ce.device).index_add_(0, sample_of_token, ce.detach())
        hits = (logits.argmax(-1) == targets[sel]).float()
        per_sample_correct = torch.zeros_like(per_sample).index_add_(0, sample_of_token, hits)
        return {"loss_sum": ce.sum(), "n_tokens": sel.sum(), "n_correct": hits.sum(), **extra,
                "per_sample_loss": per_sample, "per_sample_tokens": sel.sum(1), "per_sample_correct": per_sample_correct}

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
        out = self.llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=max_new_tokens,
                                num_beams=num_beams, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id,
                                **generate_kwargs)
        results = []
        for row in out.tolist():
            row = row[width:] if len(row) > max_new_tokens else row  # some versions return the prompt too
            results.append(row[: row.index(eos_id)] if eos_id in row else row)
        return results


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
                    attn_implementation=llm_cfg.get("attn_implementation", "sdpa"))
    if llm_cfg.get("gradient_checkpointing"):
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = llm_cfg.get("lora") or {}
    if lora.get("enabled"):
        llm = apply_lora(llm, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                         target_modules=list(lora["target_modules"]))
    hidden = base_model(llm).config.hidden_size
    a = dict(cfg["adapter"])
    adapter = Adapter(d_enc=encoder.d_model, d_llm=hidden, d_model=a.get("d_model", encoder.d_model),
                      n_layers=a["n_layers"], n_heads=a["n_heads"], ffn_dim=a["ffn_dim"], dropout=a["dropout"],
                      strides=tuple(a["strides"]))
    model = SpeechLLM(encoder, adapter, llm, speech_token_num=cfg["speech_token_num"],
                      encoder_cache=cfg.get("encoder_cache", False), ctc_weight=float(cfg.get("ctc_weight", 0.0)),
                      encoder_sub_batches=int(cfg.get("encoder_sub_batches", 1)))
    apply_freezing(model, list(cfg.get("freeze") or []), list(cfg.get("unfreeze") or []))
    return model, tokenizer
