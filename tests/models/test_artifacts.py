"""`osum.models.artifacts`: a checkpoint written by a stage other than UnderstandingStage (a class defined
here, which nothing outside this file can import) loads through load_backbone, SpeechAssistant and export."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from test_export import MODEL, text_side
from transformers import AutoModelForCausalLM, Qwen2Config

from osum.export import export
from osum.inference import DecodeOptions, SpeechAssistant
from osum.models.artifacts import artifact_kind, is_export_dir, load_backbone
from osum.stages.base import StageBase


class EchoStage(StageBase):
    """A stage of its own kind, with a module of its own beside the backbone."""

    stage_name = "echo"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_head = torch.nn.Linear(4, 4)  # not part of the backbone: readers skip it


def write_checkpoint(stage: L.LightningModule, path: Path) -> Path:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(stage)
    trainer.save_checkpoint(path)
    return path


def echo_stage(tokenizer_dir: str, model: dict) -> EchoStage:
    model = copy.deepcopy(model)
    model["llm"]["tokenizer"] = tokenizer_dir
    torch.manual_seed(0)
    stage = EchoStage(model=model, optim={"lr": 1e-3}, scheduler={"name": "constant"}, text=text_side(tokenizer_dir))
    with torch.no_grad():
        for p in stage.backbone.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))  # "trained"
    return stage


@pytest.fixture(scope="module")
def echo_ckpt(tokenizer_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("echo")
    stage = echo_stage(tokenizer_dir, MODEL)
    return stage, write_checkpoint(stage, tmp / "echo.ckpt")


def test_kinds(echo_ckpt, tmp_path):
    _, ckpt = echo_ckpt
    assert artifact_kind(ckpt) == "checkpoint" and not is_export_dir(ckpt)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor an osum.export folder"):
        artifact_kind(tmp_path / "nothing")


def test_load_backbone_of_another_stage(echo_ckpt):
    stage, ckpt = echo_ckpt
    assert "extra_head.weight" in torch.load(ckpt, weights_only=True)["state_dict"]
    backbone, text_cfg = load_backbone(ckpt)
    assert text_cfg == dict(stage.hparams["text"])
    want = stage.backbone.state_dict()
    got = backbone.state_dict()
    assert list(got) == list(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)


def test_assistant_and_export_of_another_stage_answer_alike(echo_ckpt, tmp_path):
    _, ckpt = echo_ckpt
    out = export(ckpt, tmp_path / "exported")
    assert is_export_dir(out) and artifact_kind(out) == "export"
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 7000)]
    answers = []
    for source in (ckpt, out):
        assistant = SpeechAssistant.load(str(source))
        speech, lengths = assistant.speech(audios)
        task = assistant.registry.get("<TRANSCRIBE>")
        opts = DecodeOptions(max_new_tokens=8)
        answers.append(assistant.answer(speech, lengths, [assistant.instruction(task, opts)] * 2, "text", opts))
    assert answers[0] == answers[1]


def test_trainable_only_checkpoint_of_another_stage_restores_the_frozen_base(tokenizer, tokenizer_dir, tmp_path):
    """The frozen LLM comes from its pretrained folder: left out of the checkpoint, back in load_backbone."""
    AutoModelForCausalLM.from_config(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, tie_word_embeddings=True)).save_pretrained(tmp_path / "llm")
    model = copy.deepcopy(MODEL)
    model["llm"].update(path=str(tmp_path / "llm"), config=None)
    stage = echo_stage(tokenizer_dir, model)
    ckpt = write_checkpoint(stage, tmp_path / "trainable.ckpt")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["osum_base_weights"]["keys"] and not set(saved["osum_base_weights"]["keys"]) & set(saved["state_dict"])
    backbone, _ = load_backbone(ckpt)
    for name, value in stage.backbone.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[name], value, rtol=0, atol=0, msg=name)
