"""The smol recipe end to end at toy sizes: `+recipe=smol` with its model folders replaced by tiny random
ones of the same kinds (a transformers Whisper folder, a causal-LM folder with LoRA), on a tiny smol corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rlazyload import write_lazyload
from test_train import run

from data_prep import smol_corpus
from osum.convert.tokens import add_tag_tokens


@pytest.fixture(scope="module")
def smol_root(tmp_path_factory, tokenizer_dir) -> Path:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, WhisperConfig, WhisperModel

    root = tmp_path_factory.mktemp("smol")
    WhisperModel(WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                               decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                               num_mel_bins=80)).save_pretrained(root / "assets" / "whisper-base")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    llm = root / "assets" / "smollm2-135m"
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True)
                     ).save_pretrained(llm)
    tok.save_pretrained(llm)
    add_tag_tokens(llm, root / "assets" / "smollm2-135m-tags")  # as `make smol-assets` does
    words = "he was not an ill disposed young man unless to be rather cold hearted and selfish".split()
    sentences = [" ".join(words[(3 * i) % 10 : (3 * i) % 10 + 6] + [words[i % 16]]) + "." for i in range(40)]
    write_lazyload(root / "janeaustenr" / "data" / "Rdata", {"emma": sentences})
    smol_corpus.build(root / "data" / "smol", root / "janeaustenr", num_train=16, num_valid=4, num_test=4, workers=1)
    return root


def test_two_steps_of_smol_recipe_then_decode_real_clips(smol_root: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    run("osum.train", "+recipe=smol", f"paths.assets={smol_root / 'assets'}", f"paths.data_root={smol_root / 'data'}",
        f"paths.exp_root={exp}", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
        "data.num_workers=0", "data.batch.max_samples=4", "callbacks.checkpoint.every_n_train_steps=2")
    ckpt = exp / "smol" / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    out = tmp_path / "decode"
    run("osum.decode", "--ckpt", str(ckpt), "--shards", str(smol_root / "data" / "smol" / "real"), "--out", str(out),
        "--tasks", "<TRANSCRIBE>", "--max-new-tokens", "4", "--batch-size", "5")
    report = json.loads((out / "report.json").read_text())
    assert {"wer", "wer/librivox", "wer/cards"} <= set(report["tasks"]["<TRANSCRIBE>"])
    shutil.rmtree(exp)
