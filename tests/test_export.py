"""`osum.export`: a checkpoint with LoRA becomes a self-contained folder that answers exactly the same."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from osum.export import export
from osum.inference import DecodeOptions, SpeechAssistant
from osum.stages.understanding import UnderstandingStage
from osum.template import Turn

ROOT = Path(__file__).resolve().parent.parent
MODEL = {
    "encoder": {"path": None, "config": {"n_mels": 80, "d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64}},
    "adapter": {"d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_dim": 64, "dropout": 0.0, "strides": [1, 2, 2]},
    "llm": {"path": None, "dtype": "float32", "attn_implementation": "sdpa",
            "config": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 64, "tie_word_embeddings": True},
            "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                     "target_modules": ["q_proj", "v_proj", "down_proj"]}},
    "speech_token_num": 4097,
    "freeze": ["^speech_head\\."],
    "utterance_slots": 1, "voice_fusion": True,  # the voice embedding is exported, and its fusion decodes alike
}
RENDERING = {"prompt_file": None, "answer_separator": "<开始回答>", "time_decimals": 1, "lowercase": True,
             "label_sets": None}
TASKS = ["<TRANSCRIBE>", "<TRANSCRIBE> <GENDER>", "<TRANSCRIBE> <EMOTION>"]


def text_side(tokenizer_dir: str) -> dict:
    """The text-side config of the tiny stages: the repository's ChatML template, the test rendering."""
    template = yaml.safe_load((ROOT / "configs" / "template" / "chatml.yaml").read_text())
    template["utterance_slots"] = MODEL["utterance_slots"]  # an interpolation of model.utterance_slots in a composed config
    return {"tokenizer": tokenizer_dir, "template": template, "rendering": RENDERING}


@pytest.fixture(scope="module")
def trained(tokenizer_dir, tmp_path_factory):
    """A Lightning checkpoint of a tiny stage whose LoRA B matrices are non-zero, and its export folder."""
    model = copy.deepcopy(MODEL)
    model["llm"]["tokenizer"] = tokenizer_dir
    torch.manual_seed(0)
    stage = UnderstandingStage(model=model, optim={"lr": 1e-3}, scheduler={"name": "constant"},
                               text=text_side(tokenizer_dir))
    with torch.no_grad():
        for name, p in stage.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    tmp = tmp_path_factory.mktemp("export")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(stage)
    trainer.save_checkpoint(tmp / "stage.ckpt")
    return tmp / "stage.ckpt", export(tmp / "stage.ckpt", tmp / "exported")


def audios(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 9000, 4000)]


def test_folder_layout_and_config(trained):
    _, out = trained
    for name in ("osum.yaml", "encoder.safetensors", "adapter.safetensors", "speech.safetensors", "utterance.safetensors",
                 "llm/config.json", "llm/model.safetensors", "llm/chat_template.jinja", "tokenizer/tokenizer.json"):
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "osum.yaml").read_text())
    assert config["model"]["llm"]["path"] == "llm" and config["model"]["llm"]["lora"] == {"enabled": False}
    assert config["model"]["encoder"]["path"] is None
    assert config["model"]["encoder"]["config"] == {"n_mels": 80, "d_model": 32, "n_layers": 1, "n_heads": 4,
                                                    "ffn_dim": 64, "max_source_positions": 1500}
    assert config["template"]["layout"] == "chatml" and config["rendering"]["lowercase"] is True


def test_llm_folder_is_plain_transformers_with_lora_merged(trained):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    ckpt, out = trained
    llm = AutoModelForCausalLM.from_pretrained(out / "llm")
    names = list(llm.state_dict()) + list(load_file(str(out / "llm" / "model.safetensors")))
    assert not [n for n in names if "lora" in n or "base_layer" in n]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    base = state["backbone.llm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    merged = llm.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    assert not torch.allclose(merged, base)  # the LoRA update is in the exported weights


def test_export_generates_exactly_what_the_checkpoint_generates(trained):
    ckpt, out = trained
    from_ckpt, from_export = SpeechAssistant.from_checkpoint(str(ckpt)), SpeechAssistant.load(str(out))
    assert "lora" not in "".join(n for n, _ in from_export.backbone.named_parameters())
    for assistant in (from_ckpt, from_export):  # the fused label ids come back from the text side
        assert assistant.backbone.voice_fusion and assistant.backbone.fusion_label_ids is not None
    torch.testing.assert_close(from_export.backbone.utterance.proj.weight, from_ckpt.backbone.utterance.proj.weight)
    ids = []
    for assistant in (from_ckpt, from_export):
        speech, lengths = assistant.speech(audios())
        opts = DecodeOptions(max_new_tokens=12)
        prompts = [assistant.builder.prompt(
            "text", [Turn.spoken(int(n), assistant.instruction(assistant.registry.get(t), opts))])
            for t, n in zip(TASKS, lengths)]
        ids.append(assistant.backbone.generate(prompts, speech, lengths, eos_id=assistant.builder.eos_id,
                                               pad_id=assistant.tokenizer.pad_token_id, max_new_tokens=12))
    assert ids[0] == ids[1]
    assert any(len(row) > 0 for row in ids[0])


def test_infer_accepts_an_export_folder(trained, tmp_path, capsys):
    from osum.infer import main

    ckpt, out = trained
    sf.write(tmp_path / "a.wav", audios(1)[0], 16000)
    answers = []
    for source in (ckpt, out):
        main(["--ckpt", str(source), "--audio", str(tmp_path / "a.wav"), "--max-new-tokens", "6", "--device", "cpu"])
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1]


def test_the_phased_loop_answers_as_transformers_generate(trained):
    """Greedy text replies through the generation loop (respond) equal transformers' generate (answer)."""
    assistant = SpeechAssistant.load(str(trained[0]))
    speech, lengths = assistant.speech(audios())
    opts = DecodeOptions(max_new_tokens=12)
    instructions = [assistant.instruction(assistant.registry.get(t), opts) for t in TASKS]
    want = assistant.answer(speech, lengths, instructions, "text", opts)
    got = assistant.respond("text", [[Turn.spoken(int(n), i)] for i, n in zip(instructions, lengths)], speech,
                            lengths, greedy=True, max_new_tokens=12)
    print("replies:", [r.text for r in got])
    assert [r.text for r in got] == want
