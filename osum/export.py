"""`python -m osum.export --ckpt X.ckpt --out DIR`: a self-contained folder for inference.

The LLM's LoRA (if any) is merged into its weights (peft ``merge_and_unload``). The folder holds:

* ``llm/``: the merged causal LM (transformers ``save_pretrained``, safetensors) with its tokenizer and
  chat template; it loads with ``AutoModelForCausalLM`` alone;
* ``encoder.safetensors``, ``adapter.safetensors``, ``speech.safetensors`` (speech_embed + speech_head);
* ``tokenizer/``: the tokenizer of the text side;
* ``osum.yaml``: the model / template / rendering config, rewritten to point at these files (encoder
  sizes instead of a path, ``llm.path: llm``, LoRA disabled, nothing frozen). Paths are relative to
  the folder, so it can be moved. ``SpeechAssistant.from_export(DIR)`` loads it.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import save_file
from torch import nn

from osum.models.encoder import WhisperEncoder
from osum.models.llm import base_model

log = logging.getLogger("osum.export")

CONFIG_NAME = "osum.yaml"


def is_export_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_NAME).is_file()


def encoder_sizes(encoder: WhisperEncoder) -> dict[str, int]:
    """The constructor sizes of a built encoder (so that the export needs no Whisper folder)."""
    layer = encoder.layers[0]
    return {"n_mels": encoder.n_mels, "d_model": encoder.d_model, "n_layers": len(encoder.layers),
            "n_heads": layer.self_attn.n_heads, "ffn_dim": layer.fc1.out_features,
            "max_source_positions": encoder.max_positions}


def part_modules(backbone: nn.Module) -> dict[str, nn.Module]:
    """The non-LLM modules of a backbone, by file name (``speech``: speech_embed + speech_head)."""
    return {"encoder": backbone.encoder, "adapter": backbone.adapter,
            "speech": nn.ModuleDict({"speech_embed": backbone.speech_embed, "speech_head": backbone.speech_head})}


def merged_llm(llm: nn.Module) -> nn.Module:
    """The transformers model with any LoRA merged in."""
    return llm.merge_and_unload() if hasattr(llm, "merge_and_unload") else base_model(llm)


def export_config(model_cfg: dict[str, Any], text_cfg: dict[str, Any], encoder: WhisperEncoder,
                  prompt_file: str | None) -> dict[str, Any]:
    """``osum.yaml``: the model config pointing at the folder's own files, with the text side."""
    model = copy.deepcopy(model_cfg)
    model["encoder"] = {"path": None, "strict": True, "gradient_checkpointing": False,
                        "config": encoder_sizes(encoder)}
    llm = model["llm"]
    llm.update(path="llm", tokenizer="tokenizer", config=None, lora={"enabled": False})
    model.update(freeze=[], unfreeze=[], encoder_cache=False, ctc_weight=0.0)  # CTC only aids training
    rendering = {**text_cfg["rendering"], "prompt_file": prompt_file}
    return {"model": model, "template": text_cfg["template"], "rendering": rendering}


def export(ckpt: str | Path, out: str | Path) -> Path:
    """Write the export folder of a training checkpoint (see the module docstring)."""
    from osum.stages.understanding import UnderstandingStage

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = UnderstandingStage.load_from_checkpoint(str(ckpt), map_location="cpu")
    backbone, hparams = stage.backbone, stage.hparams
    for name, module in part_modules(backbone).items():
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out / f"{name}.safetensors"))
    llm = merged_llm(backbone.llm)
    llm.save_pretrained(out / "llm", safe_serialization=True)
    stage.tokenizer.save_pretrained(out / "llm")
    if not stage.tokenizer.chat_template:
        log.warning("the tokenizer has no chat template; llm/ is saved without one")
    stage.tokenizer.save_pretrained(out / "tokenizer")
    prompt_file = hparams["text"]["rendering"].get("prompt_file")
    if prompt_file:
        shutil.copyfile(prompt_file, out / "prompts.yaml")
    config = export_config(dict(hparams["model"]), dict(hparams["text"]), backbone.encoder,
                           "prompts.yaml" if prompt_file else None)
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


def load_export(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone (LLM from ``llm/``, the rest from the safetensors files) and the text-side config."""
    from safetensors.torch import load_file

    from osum.models.backbone import build_backbone
    from osum.models.weights import load_with_report

    config = resolve_export_config(directory)
    backbone, _ = build_backbone(config["model"])
    for name, module in part_modules(backbone).items():
        load_with_report(module, load_file(str(Path(directory) / f"{name}.safetensors")), what=f"export {name}")
    text = {"tokenizer": config["model"]["llm"]["tokenizer"], "template": config["template"],
            "rendering": config["rendering"]}
    return backbone, text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="the folder to write")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"wrote {export(args.ckpt, args.out)}")


if __name__ == "__main__":
    main()
