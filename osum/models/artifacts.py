"""The two on-disk formats of a trained backbone, read and written without naming a stage class.

* **Lightning checkpoint** (``.ckpt``) of any stage: ``hyper_parameters`` hold the ``model`` config
  (``osum.models.backbone.build_backbone`` rebuilds the backbone from it) and the ``text`` config
  (``osum.text``); ``state_dict`` holds the backbone's tensors under ``backbone.``. A trainable-only
  checkpoint (``model.checkpoint_weights: trainable``) leaves out the frozen tensors of the pretrained
  folders and names them under ``osum_base_weights``: they come back from those folders when the
  backbone is rebuilt.
* **Export folder** (``python -m osum.export``), self-contained for inference:

  - ``llm/``: the causal LM with any LoRA merged (transformers ``save_pretrained``, safetensors), with its
    tokenizer and chat template; it loads with ``AutoModelForCausalLM`` alone;
  - ``encoder.safetensors``, ``adapter.safetensors``, ``speech.safetensors`` (speech_embed + speech_head);
  - ``tokenizer/``: the tokenizer of the text side;
  - ``osum.yaml``: the model / template / rendering config, rewritten to point at these files (encoder
    sizes instead of a path, ``llm.path: llm``, LoRA disabled, nothing frozen). Paths are relative to
    the folder, so it can be moved.

``load_backbone(path)`` reads either into a backbone and its text-side config; ``load_initial_weights``
reads either into an existing backbone (``init_from``).
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from osum.models.backbone import build_backbone
from osum.models.encoder import WhisperEncoder
from osum.models.labels import tag_token_kinds
from osum.models.llm import base_model
from osum.models.weights import load_folder_state_dict, load_with_report
from osum.text import load_tokenizer, text_config

log = logging.getLogger(__name__)

CONFIG_NAME = "osum.yaml"
STATE_PREFIX = "backbone."  # the backbone's tensors in a stage's state_dict
BASE_WEIGHTS_KEY = "osum_base_weights"  # the frozen pretrained tensors a trainable-only checkpoint left out


def is_export_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_NAME).is_file()


def artifact_kind(path: str | Path) -> str:
    """``"export"`` (a folder with ``osum.yaml``) or ``"checkpoint"`` (a file); anything else is an error."""
    if is_export_dir(path):
        return "export"
    if Path(path).is_file():
        return "checkpoint"
    raise FileNotFoundError(f"{path} is neither a checkpoint file nor an osum.export folder (with {CONFIG_NAME})")


# ---------------------------------------------------------------------------------------------- checkpoint
def leave_out_frozen_base(checkpoint: dict, backbone: nn.Module, model_cfg: Mapping[str, Any]) -> None:
    """``model.checkpoint_weights=trainable``: drop the frozen tensors of the pretrained folders from a
    stage's checkpoint (a LoRA run of a 7B LLM saves megabytes, not 15 GB) and record which; ``full`` keeps all."""
    if model_cfg.get("checkpoint_weights", "trainable") == "full":
        return
    frozen = {STATE_PREFIX + n for n, p in backbone.named_parameters(remove_duplicate=False)
              if not p.requires_grad}  # tied weights appear under every name
    prefixes = tuple(STATE_PREFIX + f"{part}." for part in ("encoder", "llm") if model_cfg[part].get("path"))
    dropped = [k for k in checkpoint["state_dict"] if k in frozen and k.startswith(prefixes)]
    for k in dropped:
        del checkpoint["state_dict"][k]
    checkpoint[BASE_WEIGHTS_KEY] = {"keys": dropped, "encoder": model_cfg["encoder"].get("path"),
                                    "llm": model_cfg["llm"].get("path")}


def restore_frozen_base(checkpoint: dict, own_state: Mapping[str, torch.Tensor]) -> None:
    """Put the tensors a trainable-only checkpoint left out back into its ``state_dict``, from ``own_state``
    (the stage-named state of a model just built from the pretrained folders)."""
    base = checkpoint.get(BASE_WEIGHTS_KEY)
    if not base:
        return
    missing = [k for k in base["keys"] if k not in own_state]
    if missing:
        raise KeyError(f"checkpoint refers to base weights the model does not have: {missing[:5]}")
    checkpoint["state_dict"].update({k: own_state[k] for k in base["keys"]})
    log.info("restored %d frozen tensors from the base weights (encoder %s, llm %s)", len(base["keys"]),
             base["encoder"], base["llm"])


def read_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)


def backbone_state(stage_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a stage's state_dict, named as in the backbone."""
    return {k.removeprefix(STATE_PREFIX): v for k, v in stage_state.items() if k.startswith(STATE_PREFIX)}


def checkpoint_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Backbone-named tensors of a Lightning checkpoint, and the names of the frozen base tensors a
    trainable-only checkpoint left out on purpose."""
    checkpoint = read_checkpoint(path)
    base = checkpoint.get(BASE_WEIGHTS_KEY) or {}
    return backbone_state(checkpoint["state_dict"]), {k.removeprefix(STATE_PREFIX) for k in base.get("keys", [])}


def save_checkpoint(backbone: nn.Module, hparams: Mapping[str, Any], out: str | Path) -> Path:
    """A Lightning checkpoint (weights and hyper-parameters, no trainer state) of ``backbone``: every stage's
    ``load_from_checkpoint``, ``load_backbone`` and so ``osum.decode``, ``osum.infer`` and ``osum.export`` read it."""
    import lightning

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    state = {STATE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": dict(hparams),
                "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0}, out)
    return Path(out)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The backbone of a checkpoint of any stage (rebuilt from its ``model`` config, frozen base tensors
    restored from the pretrained folders, every other tensor loaded strictly), its model and text configs."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    model_cfg, text_cfg = dict(hparams["model"]), dict(hparams.get("text") or {})
    backbone, _ = build_backbone(model_cfg)
    restore_frozen_base(checkpoint, {STATE_PREFIX + k: v for k, v in backbone.state_dict().items()})
    load_with_report(backbone, backbone_state(checkpoint["state_dict"]), what=f"checkpoint {path}")
    return backbone, model_cfg, text_cfg


# ---------------------------------------------------------------------------------------------- export folder
def encoder_sizes(encoder: WhisperEncoder) -> dict[str, int]:
    """The constructor sizes of a built encoder (so that the export needs no Whisper folder)."""
    layer = encoder.layers[0]
    return {"n_mels": encoder.n_mels, "d_model": encoder.d_model, "n_layers": len(encoder.layers),
            "n_heads": layer.self_attn.n_heads, "ffn_dim": layer.fc1.out_features,
            "max_source_positions": encoder.max_positions}


def part_modules(backbone: nn.Module) -> dict[str, nn.Module]:
    """The non-LLM modules of a backbone, by file name (``speech``: speech_embed + speech_head; ``utterance``: the
    voice embedding and its statistics, where the model has one)."""
    parts = {"encoder": backbone.encoder, "adapter": backbone.adapter,
             "speech": nn.ModuleDict({"speech_embed": backbone.speech_embed, "speech_head": backbone.speech_head})}
    if backbone.utterance is not None:
        parts["utterance"] = backbone.utterance
    return parts


def merged_llm(llm: nn.Module) -> nn.Module:
    """The transformers model with any LoRA merged in."""
    return llm.merge_and_unload() if hasattr(llm, "merge_and_unload") else base_model(llm)


def export_config(model_cfg: Mapping[str, Any], text_cfg: Mapping[str, Any], encoder: WhisperEncoder,
                  prompt_file: str | None) -> dict[str, Any]:
    """``osum.yaml``: the model config pointing at the folder's own files, with the text side."""
    model = copy.deepcopy(dict(model_cfg))
    model["encoder"] = {"path": None, "strict": True, "gradient_checkpointing": False,
                        "config": encoder_sizes(encoder)}
    llm = model["llm"]
    llm.update(path="llm", tokenizer="tokenizer", config=None, lora={"enabled": False})
    model.update(freeze=[], unfreeze=[], encoder_cache=False, ctc_weight=0.0)  # CTC only aids training
    rendering = {**text_cfg["rendering"], "prompt_file": prompt_file}
    return {"model": model, "template": text_cfg["template"], "rendering": rendering}


def save_export(backbone: nn.Module, model_cfg: Mapping[str, Any], text_cfg: Mapping[str, Any],
                out: str | Path) -> Path:
    """Write the export folder of a backbone built from ``model_cfg`` (see the module docstring)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, module in part_modules(backbone).items():
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out / f"{name}.safetensors"))
    merged_llm(backbone.llm).save_pretrained(out / "llm", safe_serialization=True)
    tokenizer = load_tokenizer(text_cfg["tokenizer"])
    tokenizer.save_pretrained(out / "llm")
    if not tokenizer.chat_template:
        log.warning("the tokenizer has no chat template; llm/ is saved without one")
    tokenizer.save_pretrained(out / "tokenizer")
    prompt_file = text_cfg["rendering"].get("prompt_file")
    if prompt_file:
        shutil.copyfile(prompt_file, out / "prompts.yaml")
    config = export_config(model_cfg, text_cfg, backbone.encoder, "prompts.yaml" if prompt_file else None)
    (out / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return out


def resolve_export_config(directory: str | Path) -> dict[str, Any]:
    """``osum.yaml`` with its folder-relative paths made absolute."""
    directory = Path(directory).resolve()
    config = yaml.safe_load((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    llm = config["model"]["llm"]
    llm["path"], llm["tokenizer"] = str(directory / llm["path"]), str(directory / llm["tokenizer"])
    if config["rendering"].get("prompt_file"):
        config["rendering"]["prompt_file"] = str(directory / config["rendering"]["prompt_file"])
    return config


def export_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """Backbone-named tensors of an export folder (merged LLM in ``llm/``, the rest in safetensors)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state = {f"llm.{k}": v for k, v in load_folder_state_dict(directory / "llm").items()}
    for part, prefix in (("encoder", "encoder."), ("adapter", "adapter."), ("speech", ""), ("utterance", "utterance.")):
        if part != "utterance" or (directory / f"{part}.safetensors").exists():
            state.update({prefix + k: v for k, v in load_file(str(directory / f"{part}.safetensors")).items()})
    return state


def load_export(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone (LLM from ``llm/``, the rest from the safetensors files) and the text-side config."""
    from safetensors.torch import load_file

    config = resolve_export_config(directory)
    backbone, _ = build_backbone(config["model"])
    for name, module in part_modules(backbone).items():
        load_with_report(module, load_file(str(Path(directory) / f"{name}.safetensors")), what=f"export {name}")
    return backbone, text_config(config)


# ---------------------------------------------------------------------------------------------- either
def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The backbone of an export folder or of a checkpoint of any stage, on ``device`` in eval mode, and
    its text-side config (``osum.text.build_text_side`` takes its parts)."""
    if artifact_kind(path) == "export":
        backbone, text_cfg = load_export(path)
    else:
        backbone, _, text_cfg = load_checkpoint(path)
    if backbone.voice_fusion:  # the label tags' token ids, as the stage gave them in training
        _, choices = tag_token_kinds(load_tokenizer(text_cfg["tokenizer"]), text_cfg.get("rendering") or {})
        backbone.use_label_ids(choices.ids if choices is not None else None)
    return backbone.to(device).eval(), text_cfg


def _peft_free(name: str) -> str:
    """A backbone tensor name as it reads without a peft LoRA wrapper around the LLM."""
    return name.replace("llm.base_model.model.", "llm.", 1).replace(".base_layer.", ".")


def load_initial_weights(backbone: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Weights only (no optimizer, step or data position) from a training checkpoint or an export folder.

    Names are matched across a LoRA wrapper (a plain stage-1 LLM into a stage-2 LLM with LoRA, whose
    adapters then start fresh); missing and unexpected keys are logged, shape mismatches skipped.
    """
    path = Path(path)
    state, from_base = (export_state_dict(path), set()) if is_export_dir(path) else checkpoint_state_dict(path)
    by_plain_name = {_peft_free(k): k for k in backbone.state_dict()}
    state = {by_plain_name.get(_peft_free(k), k): v for k, v in state.items()}
    from_base = frozenset(by_plain_name.get(_peft_free(k), k) for k in from_base)
    return load_with_report(backbone, state, strict=False, what=f"init_from {path}", from_base=from_base)
