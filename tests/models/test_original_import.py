"""Original OSUM / OSUM-EChat checkpoints: every tensor lands in our SpeechLLM and the outputs match.

The original checkpoint is made here from a tiny model of ours by writing its tensors under the
original WeNet / PEFT names (reference 1.2-1.5, 4.7), independently of osum.models.original.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from batches import text_batch

from osum.models.backbone import build_backbone
from osum.models.original import import_original
from osum.models.weights import WeightMismatchError

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}
TINY = {
    "encoder": {"path": None, "config": {"n_mels": 80, "d_model": 32, "n_layers": 2, "n_heads": 4, "ffn_dim": 64}},
    "adapter": {"d_model": 32, "n_layers": 2, "n_heads": 4, "ffn_dim": 48, "dropout": 0.0, "strides": [1, 2, 2]},
    "llm": {"path": None, "dtype": "float32", "attn_implementation": "sdpa",
            "config": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 64, "tie_word_embeddings": False},
            "lora": {"enabled": False, "alpha": 8}},
    "speech_token_num": 4097,
    "freeze": [],
}

# Our name -> original name (the inverse of the import), for everything but the adapter's fused q/k/v.
TO_ORIGINAL = (
    (r"^encoder\.conv1\.", "encoder.embed.conv.0."),
    (r"^encoder\.conv2\.", "encoder.embed.conv.2."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.q_proj\.", r"encoder.encoders.\1.self_attn.linear_q."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.k_proj\.", r"encoder.encoders.\1.self_attn.linear_k."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.v_proj\.", r"encoder.encoders.\1.self_attn.linear_v."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.encoders.\1.self_attn.linear_out."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.encoders.\1.feed_forward.w_1."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.encoders.\1.feed_forward.w_2."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.encoders.\1.norm1."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.encoders.\1.norm2."),
    (r"^encoder\.layer_norm\.", "encoder.after_norm."),
    (r"^adapter\.conv\.convs\.0\.", "down_sample_2.conv.1."),
    (r"^adapter\.conv\.convs\.1\.", "down_sample_2.conv.4."),
    (r"^adapter\.conv\.convs\.2\.", "down_sample_2.conv.7."),
    (r"^adapter\.input_layer\.0\.", "speech_transformer.embed.out.0."),
    (r"^adapter\.input_layer\.1\.", "speech_transformer.embed.out.1."),
    (r"^adapter\.transformer\.layers\.(\d+)\.self_attn\.out_proj\.",
     r"speech_transformer.encoders.\1.self_attn.linear_out."),
    (r"^adapter\.transformer\.layers\.(\d+)\.linear1\.", r"speech_transformer.encoders.\1.feed_forward.w_1."),
    (r"^adapter\.transformer\.layers\.(\d+)\.linear2\.", r"speech_transformer.encoders.\1.feed_forward.w_2."),
    (r"^adapter\.transformer\.layers\.(\d+)\.norm([12])\.", r"speech_transformer.encoders.\1.norm\2."),
    (r"^adapter\.final_norm\.", "speech_transformer.after_norm."),
    (r"^adapter\.proj\.", "speech_llama_proj."),
    (r"^speech_embed\.weight$", "speech_token_emded.weight"),
    (r"^llm\.", "llama_model."),
)
IN_PROJ = re.compile(r"^adapter\.transformer\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$")


def original_state(model, head: str = "speaker_head") -> dict[str, torch.Tensor]:
    """The state dict an original OSUM (``speaker_head``) or EChat (``speech_head``) model would save."""
    out = {"ln_speech.weight": torch.ones(32), "ln_speech.bias": torch.zeros(32)}
    for name, tensor in model.state_dict().items():
        tensor = tensor.clone()
        if m := IN_PROJ.match(name):
            for part, chunk in zip("qkv", tensor.chunk(3)):
                out[f"speech_transformer.encoders.{m.group(1)}.self_attn.linear_{part}.{m.group(2)}"] = chunk
        elif name == "encoder.embed_positions.weight":
            out["encoder.embed.pos_enc.pe"] = tensor[None]  # WeNet keeps (1, max_len, d)
        elif name.startswith("speech_head."):
            out[head + name[len("speech_head"):]] = tensor
        else:
            rule = next((r for r in TO_ORIGINAL if re.search(r[0], name)), None)
            assert rule is not None, name
            out[re.sub(rule[0], rule[1], name)] = tensor
    return out


def make(tokenizer_dir, seed: int, lora: bool = False, tie: bool = False):
    cfg = copy.deepcopy(TINY)
    cfg["llm"]["tokenizer"] = tokenizer_dir
    cfg["llm"]["config"]["tie_word_embeddings"] = tie
    if lora:
        cfg["llm"]["lora"] = dict(LORA)
    torch.manual_seed(seed)
    model, _ = build_backbone(cfg)
    with torch.no_grad():  # make every LoRA do something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    return model.eval(), cfg


def batch_for(tokenizer, frames=(90, 57)):
    torch.manual_seed(123)
    return text_batch(tokenizer, frames)


def assert_same_outputs(a, b, batch, atol=1e-6):
    with torch.no_grad():
        sa, la = a.encode_speech(batch["mel"], batch["mel_lengths"])
        sb, lb = b.encode_speech(batch["mel"], batch["mel_lengths"])
        assert la.tolist() == lb.tolist()
        torch.testing.assert_close(sb, sa, atol=atol, rtol=0)
        emb = a.embed(batch["input_ids"], sa, la)
        logits_a = a.text_head(a.decoder(inputs_embeds=emb).last_hidden_state)
        logits_b = b.text_head(b.decoder(inputs_embeds=b.embed(batch["input_ids"], sb, lb)).last_hidden_state)
        torch.testing.assert_close(logits_b, logits_a, atol=atol * 10, rtol=1e-5)
        torch.testing.assert_close(b(**batch)["text"].loss_sum, a(**batch)["text"].loss_sum, atol=1e-4, rtol=1e-5)


def assert_all_equal(got: dict, want: dict):
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def test_peft_checkpoint_into_lora_model(tokenizer_dir, tokenizer):
    source, _ = make(tokenizer_dir, seed=0, lora=True)
    state = original_state(source)
    assert "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" in state
    assert "llama_model.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight" in state
    target, _ = make(tokenizer_dir, seed=1, lora=True)
    report = import_original(target, state)
    assert report.dropped and all(d.startswith("ln_speech.") for d in report.dropped)
    assert not (report.unmapped or report.missing or report.unexpected or report.lora_merged or report.lora_fresh)
    assert_all_equal(target.state_dict(), source.state_dict())
    assert_same_outputs(source, target, batch_for(tokenizer))


def test_peft_checkpoint_merged_into_plain_model(tokenizer_dir, tokenizer):
    source, _ = make(tokenizer_dir, seed=0, lora=True)
    target, _ = make(tokenizer_dir, seed=1, lora=False)
    report = import_original(target, original_state(source), lora_alpha=LORA["alpha"])
    assert len(report.lora_merged) == 2 * 3  # 2 layers x (q, v, down)
    merged = copy.deepcopy(source.llm).merge_and_unload().state_dict()
    for k, v in target.llm.state_dict().items():
        torch.testing.assert_close(v, merged[k], atol=1e-6, rtol=0)
    assert_same_outputs(source, target, batch_for(tokenizer), atol=1e-5)
    with pytest.raises(ValueError, match="lora_alpha"):
        import_original(make(tokenizer_dir, seed=2)[0], original_state(source))


def test_plain_echat_checkpoint_into_lora_model(tokenizer_dir, tokenizer):
    """EChat: no PEFT, ``speech_head``, tied embeddings saved once; our fresh LoRA changes nothing."""
    source, _ = make(tokenizer_dir, seed=0, tie=True)
    state = original_state(source, head="speech_head")
    del state["llama_model.lm_head.weight"]
    target, _ = make(tokenizer_dir, seed=1, lora=True, tie=True)
    with torch.no_grad():
        for name, p in target.named_parameters():
            if "lora_B" in name:
                p.zero_()  # peft's own init: the fresh LoRA is a no-op
    report = import_original(target, state)
    assert len(report.lora_fresh) == 6 and not report.lora_merged
    own = target.state_dict()
    for k, v in source.state_dict().items():
        ours = k
        if k.startswith("llm."):
            wrapped = "llm.base_model.model." + k[len("llm."):]
            ours = re.sub(r"(self_attn\.[qv]_proj|mlp\.down_proj)\.", r"\1.base_layer.", wrapped)
        assert torch.equal(own[ours], v), k
    assert_same_outputs(source, target, batch_for(tokenizer))


def test_unmapped_missing_and_misshaped_fail_unless_partial(tokenizer_dir):
    source, _ = make(tokenizer_dir, seed=0)
    state = original_state(source)
    with pytest.raises(WeightMismatchError, match="no place"):
        import_original(make(tokenizer_dir, seed=1)[0], {**state, "ctc.ctc_lo.weight": torch.zeros(2)})
    report = import_original(make(tokenizer_dir, seed=1)[0], {**state, "ctc.ctc_lo.weight": torch.zeros(2)},
                             allow_partial=True)
    assert report.unmapped == ["ctc.ctc_lo.weight"]
    short = {k: v for k, v in state.items() if not k.startswith("speech_transformer.encoders.1.")}
    with pytest.raises(WeightMismatchError, match="missing"):
        import_original(make(tokenizer_dir, seed=1)[0], short)
    bad = {**state, "speech_llama_proj.weight": torch.zeros(32, 16)}
    with pytest.raises(WeightMismatchError, match="shape"):
        import_original(make(tokenizer_dir, seed=1)[0], bad)


# ------------------------------------------------------------------ the original adapter, written out
def wenet_layer_norm(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def wenet_linear(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def wenet_attention(x, sd, name, mask, heads):
    b, t, d = x.shape
    q, k, v = (wenet_linear(x, sd, f"{name}.linear_{p}").view(b, t, heads, d // heads).transpose(1, 2) for p in "qkv")
    scores = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).masked_fill(~mask[:, None, None, :], float("-inf"))
    attn = torch.softmax(scores, -1).masked_fill(~mask[:, None, None, :], 0.0)
    return wenet_linear((attn @ v).transpose(1, 2).reshape(b, t, d), sd, f"{name}.linear_out")


def wenet_adapter(sd, x, lengths, heads, n_layers):
    """down_sample_2 + speech_transformer (WeNet TransformerEncoder, abs_pos, pre-LN, ReLU) + speech_llama_proj."""
    h = x.transpose(1, 2)
    for idx, stride in ((1, 1), (4, 2), (7, 2)):
        h = F.gelu(F.conv1d(F.pad(h, (2, 0)), sd[f"down_sample_2.conv.{idx}.weight"],
                            sd[f"down_sample_2.conv.{idx}.bias"], stride=stride))
    h = h.transpose(1, 2)
    mask = (torch.arange(x.shape[1])[None] < lengths[:, None])[:, 0::2][:, 0::2]
    t, d = h.shape[1:]
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    p = "speech_transformer."
    h = wenet_layer_norm(wenet_linear(h, sd, p + "embed.out.0"), sd, p + "embed.out.1") * math.sqrt(d) + pe
    for n in range(n_layers):
        layer = f"{p}encoders.{n}"
        h = h + wenet_attention(wenet_layer_norm(h, sd, f"{layer}.norm1"), sd, f"{layer}.self_attn", mask, heads)
        y = wenet_layer_norm(h, sd, f"{layer}.norm2")
        h = h + wenet_linear(F.relu(wenet_linear(y, sd, f"{layer}.feed_forward.w_1")), sd, f"{layer}.feed_forward.w_2")
    return wenet_linear(wenet_layer_norm(h, sd, p + "after_norm"), sd, "speech_llama_proj"), mask.sum(1)


def test_imported_adapter_computes_the_original_adapter(tokenizer_dir):
    source, _ = make(tokenizer_dir, seed=0)
    state = original_state(source)
    target, _ = make(tokenizer_dir, seed=1)
    import_original(target, state)
    torch.manual_seed(5)
    x, lengths = torch.randn(2, 23, 32), torch.tensor([23, 13])
    with torch.no_grad():
        ours, our_lengths = target.adapter(x, lengths)
        want, want_lengths = wenet_adapter(state, x, lengths, heads=4, n_layers=2)
    assert our_lengths.tolist() == want_lengths.tolist() == [6, 4]
    for i, n in enumerate(our_lengths.tolist()):
        torch.testing.assert_close(ours[i, :n], want[i, :n], atol=1e-5, rtol=1e-5)


def test_convert_cli_writes_a_loadable_checkpoint(tokenizer_dir, tmp_path):
    from osum.convert import main
    from osum.inference import SpeechAssistant

    source, cfg = make(tokenizer_dir, seed=0, lora=True)
    torch.save(original_state(source), tmp_path / "infer.pt")
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = tmp_path / "imported.ckpt"
    assert main(["import-original", "--src", str(tmp_path / "infer.pt"), "--config", str(tmp_path / "model.yaml"),
                 "--out", str(ckpt), "template=osum", "model.llm.lora.alpha=8"]) == 0
    assistant = SpeechAssistant.from_checkpoint(str(ckpt))
    assert_all_equal(assistant.backbone.state_dict(), source.state_dict())
    assert assistant.builder.cfg.layout == "osum"
