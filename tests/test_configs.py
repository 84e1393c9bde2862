"""Every recipe in configs/recipe/ composes, validates, and instantiates its data module, stage and trainer.

Each recipe is composed as `python -m osum.train +recipe=<name>` composes it (Hydra's compose API), then
built by ``osum.train.build``, the wiring `osum.train` runs. Its data and assets point at tiny fixtures:
every folder the recipe names under ``paths.data_root`` is the tiny mini corpus (a ``*_codes`` folder: tiny
shards with speech codes), and every pretrained
folder it names under ``paths.assets`` is a tiny random model of the same kind (a transformers Whisper,
a causal LM with the fixture tokenizer), so a new recipe is checked without any real weights.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from speech_code_shards import write_code_split

from osum.config import validate
from osum.convert.tokens import add_tag_tokens
from osum.train import build

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(p.stem for p in (ROOT / "configs" / "recipe").glob("*.yaml"))


def compose_recipe(name: str, overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", [f"+recipe={name}", *overrides])


def strings(node) -> list[str]:
    """Every string value of a resolved config."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def tiny_whisper(path: Path) -> None:
    from transformers import WhisperConfig, WhisperModel

    WhisperModel(WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                               num_mel_bins=80)).save_pretrained(path)


def tiny_llm(path: Path, tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                 tie_word_embeddings=True)).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture
def fixture_roots(mini_data, tokenizer_dir, tmp_path):
    """``compose(name)``: the recipe composed over tiny data and asset folders made for what it names."""
    data_root, assets = tmp_path / "data", tmp_path / "assets"
    data_root.mkdir()
    assets.mkdir()
    overrides = [f"paths.data_root={data_root}", f"paths.assets={assets}", f"paths.exp_root={tmp_path / 'exp'}",
                 "trainer.accelerator=cpu", "trainer.devices=1", "data.num_workers=0"]

    def compose_(name: str):
        cfg = compose_recipe(name, overrides)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        for s in strings(resolved):
            if s.startswith(f"{data_root}/") and Path(s).name.endswith("_codes") and not Path(s).exists():
                write_code_split(Path(s), 8, replies="dialogue" in Path(s).parent.name)  # speech codes of a corpus
            elif s.startswith(f"{data_root}/"):  # a corpus folder: the tiny mini corpus stands in
                top = data_root / Path(s).relative_to(data_root).parts[0]
                if not top.exists():
                    top.symlink_to(mini_data / "mini", target_is_directory=True)
        for key, make in (("encoder", tiny_whisper), ("llm", lambda p: tiny_llm(p, tokenizer_dir))):
            path = (resolved["model"].get(key) or {}).get("path")
            if path and not Path(path).exists():
                assert path.startswith(f"{assets}/"), f"recipe {name}: model.{key}.path {path} is not under paths.assets"
                make(Path(path))
        tokenizer = Path(str((resolved["model"].get("llm") or {}).get("tokenizer")))
        if "llm" in resolved["model"] and not tokenizer.exists():  # a tags tokenizer made from the LLM folder, as `make smol-assets` does
            add_tag_tokens(resolved["model"]["llm"]["path"], tokenizer)
        return cfg

    return compose_


def test_recipes_are_found():
    assert {"mini", "smol"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_instantiates(recipe, fixture_roots):
    cfg = fixture_roots(recipe)
    assert cfg.recipe_name == recipe
    validate(cfg)
    datamodule, stage, trainer = build(cfg)
    assert isinstance(datamodule, L.LightningDataModule) and datamodule.train_sets
    assert isinstance(stage, L.LightningModule) and any(p.requires_grad for p in stage.parameters())
    assert isinstance(trainer, L.Trainer) and trainer.max_steps == cfg.trainer.max_steps
    assert next(iter(datamodule.val_dataloader())) is not None  # the recipe's data settings batch the corpus
