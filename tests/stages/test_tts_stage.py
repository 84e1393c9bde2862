"""The TTS stage through the entry point: `python -m osum.train +recipe=mini_tts` on tiny shards whose samples
carry speech codes, then the trained model's codes for a text; the stage's own config checks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from run_module import run
from speech_code_shards import write_code_split

from osum.stages.tts import TTSStage

ROOT = Path(__file__).resolve().parents[2]
needs_assets = pytest.mark.skipif(not (ROOT / "assets" / "whisper-tiny.en" / "config.json").exists(),
                                  reason="run `make assets` (real Whisper tiny.en weights)")




@needs_assets
def test_mini_tts_recipe_trains_both_heads_and_speaks(mini_data, tmp_path):
    root = tmp_path / "data"  # the mini corpus (its tokenizer) beside tiny speech-code shards of this test's own
    root.mkdir()
    (root / "mini").symlink_to(mini_data / "mini", target_is_directory=True)
    for split, n in (("train_codes", 16), ("valid_codes", 4)):
        write_code_split(root / "mini_tts" / split, n, seed=len(split))
    exp = tmp_path / "exp"
    run("osum.train", "+recipe=mini_tts", f"paths.data_root={root}", f"paths.exp_root={exp}",
        "trainer.max_steps=6", "trainer.val_check_interval=6", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1", "data.num_workers=0", "data.batch.max_samples=4",
        "callbacks.checkpoint.every_n_train_steps=6")
    rows = list(csv.DictReader(open(exp / "mini_tts" / "logs" / "metrics.csv")))
    speech = [float(r["train/loss_speech"]) for r in rows if r.get("train/loss_speech")]
    text = [float(r["train/loss_text"]) for r in rows if r.get("train/loss_text")]
    assert speech and text, "both batch groups (text2token, text2text) train, each head logged apart"
    assert all(0 < v < 20 for v in speech + text)
    assert any(r.get("val/loss_speech") for r in rows)

    from osum.inference import SpeechAssistant

    assistant = SpeechAssistant.load(str(exp / "mini_tts" / "checkpoints" / "last.ckpt"))
    codes = assistant.speech_codes(["turn on the light"], greedy=True, max_new_tokens=12)[0]
    assert 0 < len(codes) <= 12 and all(0 <= c < 512 for c in codes)


def test_the_stage_refuses_a_frozen_speech_head():
    model = {"freeze": ["^encoder\\.", "^speech_head\\."], "loss_weights": {"speech": 1.0}}
    with pytest.raises(ValueError, match="freezes speech_head"):
        TTSStage(model, optim={}, scheduler={})
    with pytest.raises(ValueError, match="loss_weights.speech must be > 0"):
        TTSStage({"freeze": [], "loss_weights": {"speech": 0.0}}, optim={}, scheduler={})
