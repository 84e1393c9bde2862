"""``SpeechTokenizer``: 16 kHz audio -> discrete speech units at 25 Hz, and its self-contained folder.

Supervised tokens in the CosyVoice sense: the codes quantise an ASR-trained (Whisper) encoder's hidden
state, so they carry what the recogniser hears. A saved tokenizer is a folder that needs nothing else::

    speech_tokenizer.json   format, version, layer, pool, final_norm, codes, metric, n_mels,
                            sample_rate (16000), rate, the encoder's sizes, where it came from, training stats
    encoder.safetensors     the encoder tensors actually used (conv front end, layers 1..layer, final norm)
    codebook.safetensors    "centroids": (codes, d_model) float32
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osum.data.features import HOP
from osum.models.encoder import WhisperEncoder
from osum.speech_tokens.features import SAMPLE_RATE, LayerFeatures, encoder_sizes, n_codes
from osum.speech_tokens.kmeans import assign, check_metric, fit_kmeans

FORMAT = "osum-speech-tokenizer"
VERSION = 1
CONFIG_NAME = "speech_tokenizer.json"
ENCODER_NAME = "encoder.safetensors"
CODEBOOK_NAME = "codebook.safetensors"
REQUIRED_KEYS = ("layer", "pool", "final_norm", "codes", "metric", "n_mels", "sample_rate", "encoder")
SIZE_KEYS = ("n_mels", "d_model", "n_layers", "n_heads", "ffn_dim", "max_source_positions")


class SpeechTokenizer:
    """A truncated Whisper encoder (``LayerFeatures``) and a k-means codebook over its pooled frames."""

    def __init__(self, features: LayerFeatures, centroids: torch.Tensor, metric: str = "cosine",
                 info: dict[str, Any] | None = None):
        check_metric(metric)
        if centroids.ndim != 2 or centroids.shape[1] != features.dim:
            raise ValueError(f"codebook of shape {tuple(centroids.shape)} does not fit features of size {features.dim}")
        self.features, self.metric = features, metric
        self.centroids = centroids.float().contiguous()
        self.info = dict(info or {})

    @property
    def codes(self) -> int:
        """Codebook size K (codes are 0..K-1)."""
        return int(self.centroids.shape[0])

    @property
    def rate(self) -> float:
        """Codes per second (25.0 for pool 2)."""
        return SAMPLE_RATE / HOP / 2 / self.features.pool

    def n_codes(self, n_samples: int) -> int:
        """How many codes ``encode`` gives for ``n_samples`` of 16 kHz audio (see ``features.n_codes``)."""
        return n_codes(n_samples, self.features.pool)

    def to(self, device: str | torch.device) -> SpeechTokenizer:
        self.features.to(device)
        return self

    def encode(self, audio_16k: np.ndarray) -> list[int]:
        """Codes of one 16 kHz mono float32 clip."""
        return self.encode_batch([audio_16k])[0]

    def encode_batch(self, audios: Sequence[np.ndarray], batch_size: int = 16,
                     names: Sequence[str] | None = None) -> list[list[int]]:
        """Codes of each clip; ``names`` (sample keys) are what errors about bad clips mention."""
        feats = self.features.clips(audios, batch_size=batch_size, names=names)
        if not feats:
            return []
        codes = assign(torch.cat(feats), self.centroids, self.metric)
        return [part.tolist() for part in codes.split([len(f) for f in feats])]

    @classmethod
    def train(cls, encoder: str | Path, clips: Iterable[np.ndarray], codes: int = 4096, layer: int = -1,
              final_norm: bool | None = None, pool: int = 2, metric: str = "cosine", seed: int = 0,
              iters: int = 30, batch_size: int = 16, device: str = "cpu") -> SpeechTokenizer:
        """Fit a codebook of ``codes`` on the pooled layer-``layer`` frames of ``clips`` (16 kHz arrays).

        ``encoder``: a Whisper folder (or openai ``.pt``). ``final_norm`` None: the final LayerNorm only
        when ``layer`` is the last. ``info["training"]`` holds clips, frames, codes used and perplexity.
        """
        check_metric(metric)
        features, source = LayerFeatures.from_whisper(encoder, layer=layer, final_norm=final_norm, pool=pool)
        features.to(device)
        frames: list[torch.Tensor] = []
        batch: list[np.ndarray] = []
        n_clips = 0
        for clip in clips:
            batch.append(clip)
            if len(batch) == batch_size:
                frames += features.clips(batch, batch_size, [f"clip {n_clips + i}" for i in range(len(batch))])
                n_clips, batch = n_clips + len(batch), []
        if batch:
            frames += features.clips(batch, batch_size, [f"clip {n_clips + i}" for i in range(len(batch))])
            n_clips += len(batch)
        if not frames:
            raise ValueError("no clips to fit the speech tokenizer on")
        data = torch.cat(frames)
        result = fit_kmeans(data, codes, metric=metric, iters=iters, seed=seed)
        training = {"clips": n_clips, "frames": int(data.shape[0]), "codes_used": result.used,
                    "perplexity": round(result.perplexity, 3), "inertia": round(result.inertia, 6),
                    "iterations": result.iterations, "seed": seed}
        return cls(features.cpu(), result.centroids, metric, {"source": source, "training": training})

    def config(self) -> dict[str, Any]:
        """What ``speech_tokenizer.json`` holds."""
        return {"format": FORMAT, "version": VERSION, "layer": self.features.layer, "pool": self.features.pool,
                "final_norm": self.features.final_norm, "codes": self.codes, "metric": self.metric,
                "n_mels": self.features.n_mels, "sample_rate": SAMPLE_RATE, "rate": self.rate,
                "encoder": encoder_sizes(self.features.encoder), **self.info}

    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer folder (see the module docstring); returns it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.features.encoder.state_dict().items()}
        save_file(state, str(directory / ENCODER_NAME))
        save_file({"centroids": self.centroids.cpu()}, str(directory / CODEBOOK_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps(self.config(), indent=1) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> SpeechTokenizer:
        """Read a folder written by ``save``; errors name the file and the key that is wrong."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory}: not a speech tokenizer folder (no {CONFIG_NAME})")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            raise ValueError(f"{config_path}: format {config.get('format')!r} version {config.get('version')!r}, "
                             f"expected {FORMAT!r} version {VERSION}")
        missing = [k for k in REQUIRED_KEYS if k not in config]
        missing += [f"encoder.{k}" for k in SIZE_KEYS if k not in config.get("encoder", {})]
        if missing:
            raise ValueError(f"{config_path}: missing key(s) {missing}")
        if config["sample_rate"] != SAMPLE_RATE:
            raise ValueError(f"{config_path}: sample_rate {config['sample_rate']}, only {SAMPLE_RATE} is supported")
        sizes = {k: int(config["encoder"][k]) for k in SIZE_KEYS}
        if sizes["n_layers"] != config["layer"] or sizes["n_mels"] != config["n_mels"]:
            raise ValueError(f"{config_path}: encoder.n_layers {sizes['n_layers']} / n_mels {sizes['n_mels']} "
                             f"disagree with layer {config['layer']} / n_mels {config['n_mels']}")
        features = LayerFeatures(WhisperEncoder(**sizes), bool(config["final_norm"]), int(config["pool"]))
        state = load_file(str(directory / ENCODER_NAME))
        result = features.encoder.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{directory / ENCODER_NAME}: missing {result.missing_keys[:8]}, "
                             f"unexpected {result.unexpected_keys[:8]} tensors for the configured encoder")
        codebook = load_file(str(directory / CODEBOOK_NAME))
        if "centroids" not in codebook:
            raise ValueError(f"{directory / CODEBOOK_NAME}: no 'centroids' tensor (has {sorted(codebook)})")
        centroids = codebook["centroids"]
        if tuple(centroids.shape) != (config["codes"], sizes["d_model"]):
            raise ValueError(f"{directory / CODEBOOK_NAME}: centroids {tuple(centroids.shape)}, expected "
                             f"(codes {config['codes']}, d_model {sizes['d_model']})")
        info = {k: v for k, v in config.items() if k in ("source", "training")}
        return cls(features, centroids, config["metric"], info).to(device)
