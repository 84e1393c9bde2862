"""Inference: ``Token2Wav`` turns 25 Hz speech codes (and a reference clip for the voice) into 16 kHz audio.

    synth = Token2Wav.load("exp/mini_flow/checkpoints/last.ckpt", "exp/mini_vocoder/checkpoints/last.ckpt")
    wav = synth([12, 7, 301, ...], reference_wav)          # float32 at 16 kHz, 640 samples per code
    synth.export("exp/token2wav")                           # a self-contained folder, loadable the same way

The flow model and the vocoder each load from a Lightning checkpoint of their stage
(``osum.token2wav.stages``, which records the configs under ``"token2wav"``) or from an export folder
(``token2wav.json`` + ``flow.safetensors`` [+ ``vocoder.safetensors``]). Without a neural vocoder the mel
goes through Griffin-Lim (``osum.token2wav.griffin_lim``). Without a reference the voice is the model's
"no speaker" condition (trained by ``speaker_dropout``). A CosyVoice-300M-25Hz model folder (``flow.pt`` +
``hift.pt``) loads as CosyVoice's own flow and vocoder behind the same interface (``osum.token2wav.cosyvoice``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from osum.token2wav.cosyvoice.folder import is_cosyvoice_folder
from osum.token2wav.flow import FlowConfig, FlowModel, pad_codes
from osum.token2wav.griffin_lim import griffin_lim
from osum.token2wav.mel import MelConfig, mel_spectrogram
from osum.token2wav.stages import CHECKPOINT_KEY
from osum.token2wav.vocoder import Vocoder, VocoderConfig

if TYPE_CHECKING:
    from osum.token2wav.cosyvoice.synthesizer import CosyVoiceToken2Wav

GRIFFIN_LIM = "griffin_lim"
EXPORT_CONFIG = "token2wav.json"
EXPORT_FORMAT = 1
STATE_PREFIX = "backbone."


def _from_checkpoint(path: Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    record = ckpt.get(CHECKPOINT_KEY)
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a token2wav checkpoint (no {CHECKPOINT_KEY!r} record): train it with "
                         "+recipe=mini_flow or +recipe=mini_vocoder")
    if record.get("kind") != kind:
        raise ValueError(f"{path} is a token2wav {record.get('kind')} checkpoint, expected a {kind} one")
    state = {k[len(STATE_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(STATE_PREFIX)}
    return record, state


def _from_export(folder: Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    config = json.loads((folder / EXPORT_CONFIG).read_text())
    if config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{folder / EXPORT_CONFIG}: unknown format {config.get('format')!r}")
    record = config.get(kind)
    if record is None:
        raise ValueError(f"export folder {folder} holds no {kind} model")
    return record, load_file(str(folder / f"{kind}.safetensors"))


def load_part(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config record {"model", "mel"}, state dict) of a ``flow`` or ``vocoder`` from a checkpoint or export folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / EXPORT_CONFIG).is_file():
            raise FileNotFoundError(f"{path} is a folder without {EXPORT_CONFIG} (not a Token2Wav.export folder, "
                                    "nor a CosyVoice folder with flow.pt and hift.pt)")
        return _from_export(path, kind)
    if not path.is_file():
        raise FileNotFoundError(f"token2wav {kind}: {path} is neither a checkpoint file nor an export folder")
    return _from_checkpoint(path, kind)


class Token2Wav:
    """Codes -> mel (flow) -> waveform (vocoder, or Griffin-Lim when ``vocoder`` is None)."""

    def __init__(self, flow: FlowModel, mel: MelConfig, vocoder: Vocoder | None = None, device: str = "cpu",
                 griffin_lim_iters: int = 60):
        if vocoder is not None and vocoder.mel != mel:
            raise ValueError(f"token2wav: the vocoder's mel config {vocoder.mel} differs from the flow's {mel}")
        self.mel, self.device, self.griffin_lim_iters = mel, torch.device(device), griffin_lim_iters
        self.flow = flow.to(self.device).eval()
        self.vocoder = vocoder.to(self.device).eval() if vocoder is not None else None

    @classmethod
    def load(cls, flow: str | Path, vocoder: str | Path | None = None, device: str = "cpu"
             ) -> Token2Wav | CosyVoiceToken2Wav:
        """``flow``: a flow checkpoint or export folder. ``vocoder``: a vocoder checkpoint or export folder,
        ``"griffin_lim"``, or None: the vocoder of the export folder ``flow`` when it holds one, else Griffin-Lim.
        A CosyVoice folder as ``flow`` gives a ``CosyVoiceToken2Wav`` (its own HiFT, or ``"griffin_lim"``)."""
        if is_cosyvoice_folder(flow):
            from osum.token2wav.cosyvoice.synthesizer import CosyVoiceToken2Wav

            return CosyVoiceToken2Wav.load(flow, vocoder, device)
        flow_record, flow_state = load_part(flow, "flow")
        mel = MelConfig.from_dict(flow_record["mel"])
        model = FlowModel(FlowConfig.from_dict(flow_record["model"]))
        model.load_state_dict(flow_state)
        if vocoder is None and Path(flow).is_dir() and (Path(flow) / "vocoder.safetensors").is_file():
            vocoder = flow
        net = None
        if vocoder is not None and str(vocoder) != GRIFFIN_LIM:
            record, state = load_part(vocoder, "vocoder")
            net = Vocoder(VocoderConfig.from_dict(record["model"]), MelConfig.from_dict(record["mel"]))
            net.load_state_dict(state)
        return cls(model, mel, net, device)

    def export(self, folder: str | Path) -> Path:
        """Write ``token2wav.json``, ``flow.safetensors`` and (with a neural vocoder) ``vocoder.safetensors``."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"format": EXPORT_FORMAT, "vocoder": None}
        parts: list[tuple[str, torch.nn.Module]] = [("flow", self.flow)]
        if self.vocoder is not None:
            parts.append(("vocoder", self.vocoder))
        for name, module in parts:
            config[name] = {"model": module.cfg.to_dict(), "mel": self.mel.to_dict()}
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                      str(out / f"{name}.safetensors"))
        (out / EXPORT_CONFIG).write_text(json.dumps(config, indent=2))
        return out

    # ------------------------------------------------------------------ synthesis
    def _references(self, references: Sequence[np.ndarray | None], batch: int
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if len(references) != batch:
            raise ValueError(f"token2wav: {len(references)} reference clips for {batch} code sequences")
        if all(r is None for r in references):
            return None, None
        mels = [mel_spectrogram(np.asarray(r, dtype=np.float32), self.mel) if r is not None else None
                for r in references]
        frames = max(m.shape[-1] for m in mels if m is not None)
        padded = torch.zeros(batch, self.mel.n_mels, frames)
        lengths = torch.zeros(batch, dtype=torch.long)  # 0: no reference for that row
        for i, m in enumerate(mels):
            if m is not None:
                padded[i, :, : m.shape[-1]], lengths[i] = m, m.shape[-1]
        return padded.to(self.device), lengths.to(self.device)

    @torch.no_grad()
    def mels(self, codes: Sequence[Sequence[int]], references: Sequence[np.ndarray | None] | None = None,
             steps: int | None = None, cfg_strength: float | None = None, seed: int = 0) -> list[torch.Tensor]:
        """The flow's log mel (n_mels, 4 N) of each code sequence."""
        padded, lengths = pad_codes([list(c) for c in codes])
        ref, ref_lengths = self._references(list(references) if references is not None else [None] * len(codes),
                                            len(codes))
        generator = torch.Generator().manual_seed(seed)
        mel, mel_lengths = self.flow.sample(padded.to(self.device), lengths.to(self.device), ref, ref_lengths,
                                            steps=steps, cfg_strength=cfg_strength, generator=generator)
        return [mel[i, :, :n].cpu() for i, n in enumerate(mel_lengths.tolist())]

    @torch.no_grad()
    def vocode(self, mels: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Log mels (n_mels, F) -> float32 audio of F * hop samples each."""
        frames = max(m.shape[-1] for m in mels)
        batch = torch.full((len(mels), self.mel.n_mels, frames), float(np.log(self.mel.clamp)))
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[-1]] = m
        if self.vocoder is not None:
            wav = self.vocoder(batch.to(self.device)).clamp(-1.0, 1.0).cpu().numpy()
        else:
            wav = griffin_lim(batch, self.mel, n_iter=self.griffin_lim_iters)
        return [np.ascontiguousarray(wav[i, : m.shape[-1] * self.mel.hop_length], dtype=np.float32)
                for i, m in enumerate(mels)]

    def synthesize_batch(self, codes: Sequence[Sequence[int]],
                         references: Sequence[np.ndarray | None] | np.ndarray | None = None,
                         steps: int | None = None, cfg_strength: float | None = None, seed: int = 0) -> list[np.ndarray]:
        """16 kHz float32 audio for each code sequence; ``references``: one clip per sequence (None: no
        reference for that one), or one clip for all."""
        if isinstance(references, np.ndarray):
            references = [references] * len(codes)
        return self.vocode(self.mels(codes, references, steps, cfg_strength, seed))

    def __call__(self, codes: Sequence[int], reference_wav: np.ndarray | None = None, steps: int | None = None,
                 cfg_strength: float | None = None, seed: int = 0) -> np.ndarray:
        """16 kHz float32 audio of one code sequence, in the voice of ``reference_wav`` (16 kHz) if given."""
        return self.synthesize_batch([codes], [reference_wav], steps, cfg_strength, seed)[0]
