"""``CosyVoiceToken2Wav``: 25 Hz CosyVoice speech codes -> 16 kHz audio through CosyVoice's own flow and HiFT.

    synth = CosyVoiceToken2Wav.load("pretrained/CosyVoice-300M-25Hz")   # or Token2Wav.load(that folder)
    wav = synth([12, 7, 301, ...], reference_wav)                       # float32 at 16 kHz, 640 samples per code

The same inference interface as ``osum.token2wav.synthesizer.Token2Wav`` (``synthesize_batch``, ``__call__``,
``mels``, ``vocode``, ``mel``, ``flow.cfg.vocab_size``, ``export``). The voice: the CAM++ x-vector of the
reference clip (``campplus.onnx``, through ``osum.speech_tokens.cosyvoice.CampPlusOnnx``), zeros without a
reference or without ``campplus.onnx``. Given a ``prompt_tokenizer`` (16 kHz audio -> the same tokenizer's
codes, e.g. ``CosyVoiceTokenizerOnnx(folder / "speech_tokenizer_v1.onnx").encode`` with the 25 Hz folder's own
tokenizer file), the reference also becomes CosyVoice's prompt: its codes and its 22050 Hz mel condition the
flow, as in CosyVoice's zero-shot mode. The mel and audio are CosyVoice's (22050 Hz, 256 samples a frame); the audio
is resampled to 16 kHz and fitted to ``16000 / code_rate`` samples per code (CosyVoice's
``int(N / 25 * 22050 / 256)`` frames fall up to a frame, 11.6 ms, short: padded with silence).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from osum.token2wav.cosyvoice.config import (
    MEL_RATE,
    CosyVoiceFlowConfig,
    HiFTConfig,
    flow_config_from_state,
    hift_config_from_state,
    yaml_settings,
)
from osum.token2wav.cosyvoice.flow import CosyVoiceFlow
from osum.token2wav.cosyvoice.folder import (
    CAMPPLUS_FILE,
    FLOW_FILE,
    HIFT_FILE,
    YAML_FILE,
    hift_keys,
    load_strict,
    read_state,
    required,
)
from osum.token2wav.cosyvoice.hift import HiFTGenerator
from osum.token2wav.cosyvoice.mel import CosyVoiceMel, griffin_lim, resample

log = logging.getLogger("osum.token2wav")

GRIFFIN_LIM = "griffin_lim"
SAMPLE_RATE = 16000


def _build(cls: type, cfg, state: dict[str, torch.Tensor], path: Path):
    """``cls(cfg)`` made without allocating random weights, then given ``state`` (strict)."""
    with torch.device("meta"):
        module = cls(cfg)
    load_strict(module, state, path, assign=True)
    return module.float()


def load_flow(path: str | Path, base: CosyVoiceFlowConfig | None = None) -> CosyVoiceFlow:
    """CosyVoice's flow from ``flow.pt``, at the sizes its shapes fix (the rest from ``base``)."""
    state = read_state(path)
    return _build(CosyVoiceFlow, flow_config_from_state(state, base or CosyVoiceFlowConfig(), path), state, Path(path))


def load_hift(path: str | Path, base: HiFTConfig | None = None) -> HiFTGenerator:
    """CosyVoice's HiFT from ``hift.pt`` (either weight-norm spelling), at the sizes its shapes fix."""
    state = hift_keys(read_state(path))
    return _build(HiFTGenerator, hift_config_from_state(state, base or HiFTConfig(), path), state, Path(path))


class CosyVoiceToken2Wav:
    """Codes -> mel (CosyVoice's flow) -> waveform (HiFT, or Griffin-Lim with ``vocoder="griffin_lim"``)."""

    def __init__(self, flow: CosyVoiceFlow, hift: HiFTGenerator, campplus=None, device: str = "cpu",
                 vocoder: str = "hift", prompt_tokenizer: Callable[[np.ndarray], Sequence[int]] | None = None,
                 griffin_lim_iters: int = 60, source: Path | None = None):
        if vocoder not in ("hift", GRIFFIN_LIM):
            raise ValueError(f"cosyvoice: vocoder must be hift or {GRIFFIN_LIM}, got {vocoder!r}")
        self.device = torch.device(device)
        self.flow = flow.to(self.device).eval()
        self.hift = hift.to(self.device).eval()
        self.vocoder = self.hift if vocoder == "hift" else None
        self.campplus, self.prompt_tokenizer = campplus, prompt_tokenizer
        self.griffin_lim_iters, self.source = griffin_lim_iters, source
        self.mel = CosyVoiceMel(sample_rate=SAMPLE_RATE)

    @classmethod
    def load(cls, folder: str | Path, vocoder: str | Path | None = None, device: str = "cpu",
             prompt_tokenizer: Callable[[np.ndarray], Sequence[int]] | None = None) -> CosyVoiceToken2Wav:
        """A CosyVoice folder (``flow.pt``, ``hift.pt`` [, ``campplus.onnx``, ``cosyvoice.yaml``]). ``vocoder``:
        None (or the folder itself): its HiFT; ``"griffin_lim"``: Griffin-Lim on the flow's mel."""
        folder = Path(folder)
        if str(vocoder) == GRIFFIN_LIM:
            kind = GRIFFIN_LIM
        elif vocoder is None or (Path(vocoder).is_dir() and Path(vocoder).resolve() == folder.resolve()):
            kind = "hift"
        else:
            raise ValueError(f"{folder} is a CosyVoice folder: its vocoder is its own {HIFT_FILE}; give no vocoder "
                             f"(or the folder itself, or {GRIFFIN_LIM}), not {vocoder}")
        flow_path, hift_path = required(folder, FLOW_FILE), required(folder, HIFT_FILE)
        flow_fields, hift_fields = yaml_settings(folder / YAML_FILE) if (folder / YAML_FILE).is_file() else ({}, {})
        try:
            flow_base, hift_base = replace(CosyVoiceFlowConfig(), **flow_fields), replace(HiFTConfig(), **hift_fields)
        except ValueError as e:
            raise ValueError(f"{folder / YAML_FILE}: {e}") from None
        flow, hift = load_flow(flow_path, flow_base), load_hift(hift_path, hift_base)
        if hift.cfg.in_channels != flow.cfg.output_size:
            raise ValueError(f"{folder}: {HIFT_FILE} takes {hift.cfg.in_channels} mel bins, {FLOW_FILE} makes "
                             f"{flow.cfg.output_size}")
        campplus = None
        if (folder / CAMPPLUS_FILE).is_file():
            from osum.speech_tokens.cosyvoice import CampPlusOnnx

            campplus = CampPlusOnnx(folder / CAMPPLUS_FILE)
            if campplus.dim != flow.cfg.spk_embed_dim:
                raise ValueError(f"{folder}: {CAMPPLUS_FILE} gives {campplus.dim}-d embeddings, {FLOW_FILE} "
                                 f"takes {flow.cfg.spk_embed_dim}")
        else:
            log.warning("%s has no %s: reference clips cannot give the voice (zero x-vector)", folder, CAMPPLUS_FILE)
        return cls(flow, hift, campplus, device, kind, prompt_tokenizer, source=folder)

    def export(self, folder: str | Path) -> Path:
        """``flow.pt`` and ``hift.pt`` as state dicts, with the source folder's ``campplus.onnx`` and
        ``cosyvoice.yaml``: a folder that loads the same way."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for module, name in ((self.flow, FLOW_FILE), (self.hift, HIFT_FILE)):
            torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, out / name)
        for name in (CAMPPLUS_FILE, YAML_FILE):
            src = None if self.source is None else self.source / name
            if src is not None and src.is_file() and src.resolve() != (out / name).resolve():
                shutil.copyfile(src, out / name)
        return out

    # ------------------------------------------------------------------ synthesis
    @property
    def code_rate(self) -> int:
        return self.flow.cfg.input_frame_rate

    def samples_for_codes(self, n_codes: int) -> int:
        """16 kHz samples of ``n_codes`` codes: 640 a code at 25 Hz."""
        return round(n_codes * SAMPLE_RATE / self.code_rate)

    def xvector(self, reference: np.ndarray | None, name: str = "reference") -> torch.Tensor:
        """(1, 192) CAM++ embedding of a 16 kHz clip; zeros without one or without ``campplus.onnx``."""
        if reference is None or self.campplus is None:
            return torch.zeros(1, self.flow.cfg.spk_embed_dim)
        return torch.from_numpy(self.campplus.embed(np.asarray(reference, dtype=np.float32), name))[None]

    def prompt(self, reference: np.ndarray | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(codes (1, P), mel (1, 80, M)) of the reference as CosyVoice's prompt, or (None, None)."""
        if reference is None or self.prompt_tokenizer is None:
            return None, None
        codes = [int(c) for c in self.prompt_tokenizer(np.asarray(reference, dtype=np.float32))]
        if not codes:
            return None, None
        return torch.tensor([codes], dtype=torch.long), self.mel.mel_spectrogram(reference)[None]

    @staticmethod
    def _references(references: Sequence[np.ndarray | None] | np.ndarray | None, batch: int
                    ) -> list[np.ndarray | None]:
        if references is None:
            return [None] * batch
        if isinstance(references, np.ndarray):
            return [references] * batch
        if len(references) != batch:
            raise ValueError(f"token2wav: {len(references)} reference clips for {batch} code sequences")
        return list(references)

    @torch.no_grad()
    def mels(self, codes: Sequence[Sequence[int]], references: Sequence[np.ndarray | None] | np.ndarray | None = None,
             steps: int | None = None, cfg_strength: float | None = None, seed: int = 0) -> list[torch.Tensor]:
        """The flow's 22050 Hz log mel (80, int(N / 25 * 22050 / 256)) of each code sequence (row i: seed + i)."""
        refs = self._references(references, len(codes))
        out = []
        for i, (row, ref) in enumerate(zip(codes, refs)):
            if len(row) == 0:
                raise ValueError(f"token2wav: code sequence {i} is empty")
            prompt_codes, prompt_mel = self.prompt(ref)
            mel = self.flow.inference(torch.tensor([list(row)], dtype=torch.long, device=self.device),
                                      self.xvector(ref, f"reference {i}").to(self.device),
                                      None if prompt_codes is None else prompt_codes.to(self.device),
                                      None if prompt_mel is None else prompt_mel.to(self.device),
                                      steps=steps, cfg_rate=cfg_strength,
                                      generator=torch.Generator().manual_seed(seed + i))
            out.append(mel[0].cpu())
        return out

    @torch.no_grad()
    def vocode(self, mels: Sequence[torch.Tensor], seed: int = 0) -> list[np.ndarray]:
        """CosyVoice log mels (80, F) -> float32 16 kHz audio (256 F samples at 22050 Hz, resampled)."""
        out = []
        for i, mel in enumerate(mels):
            batch = torch.as_tensor(mel, dtype=torch.float32)[None].to(self.device)
            if self.vocoder is not None:
                wav = self.hift.inference(batch, torch.Generator().manual_seed(seed + i))[0]
            else:
                wav = griffin_lim(batch, self.mel, n_iter=self.griffin_lim_iters, seed=seed + i)[0]
            wav = resample(wav.float().cpu(), MEL_RATE, SAMPLE_RATE)
            out.append(np.ascontiguousarray(wav.numpy(), dtype=np.float32))
        return out

    def synthesize_batch(self, codes: Sequence[Sequence[int]],
                         references: Sequence[np.ndarray | None] | np.ndarray | None = None,
                         steps: int | None = None, cfg_strength: float | None = None, seed: int = 0) -> list[np.ndarray]:
        """16 kHz float32 audio for each code sequence, ``16000 / code_rate`` samples a code; ``references``: one
        16 kHz clip per sequence (None: no reference for that one), or one clip for all."""
        wavs = self.vocode(self.mels(codes, references, steps, cfg_strength, seed), seed)
        out = []
        for row, wav in zip(codes, wavs):
            n = self.samples_for_codes(len(row))
            out.append(wav[:n] if len(wav) >= n else np.pad(wav, (0, n - len(wav))))
        return out

    def __call__(self, codes: Sequence[int], reference_wav: np.ndarray | None = None, steps: int | None = None,
                 cfg_strength: float | None = None, seed: int = 0) -> np.ndarray:
        """16 kHz float32 audio of one code sequence, in the voice of ``reference_wav`` (16 kHz) if given."""
        return self.synthesize_batch([codes], [reference_wav], steps, cfg_strength, seed)[0]
