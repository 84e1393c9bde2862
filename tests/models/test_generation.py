"""Generation loop with phases: greedy text as transformers' generate, batching, TTS, S2S, interleave, sampling.

Real tiny models throughout: a random 2-layer Qwen2 backbone; where a test needs a known sequence, the heads'
weights are zeroed and their biases set, so the logits are exactly the biases and the repetition penalty
walks through them in order.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_models import tiny_model

from osum.models.backbone import build_backbone
from osum.models.generation import GREEDY, PhasePlan, Sampling, generate, process_logits, settings_for
from osum.template import OUTPUT_TYPES, SPEECH, speech_table_id

S = 4096  # the speech boundary code
NEVER = 10**6  # an EOS id no head can produce
TEXT_PLAN = PhasePlan(start_phase="text", stop="text_eos", max_new_tokens=8)


@pytest.fixture(scope="module")
def backbone(tokenizer_dir):
    torch.manual_seed(0)
    model, _ = build_backbone(tiny_model(tokenizer_dir))
    return model.eval()


@pytest.fixture()
def rigged(backbone):
    """The backbone with zeroed heads (logits = biases, set by the test); restored afterwards."""
    text_head, speech_head = backbone.text_head, backbone.speech_head
    saved = [(p, p.detach().clone()) for p in (text_head.weight, speech_head.weight, speech_head.bias)]
    had_bias = text_head.bias is not None
    if not had_bias:  # Qwen2's lm_head has none
        text_head.bias = torch.nn.Parameter(torch.zeros(text_head.out_features))
    with torch.no_grad():
        for head in (text_head, speech_head):
            head.weight.zero_()
            head.bias.zero_()
    yield backbone
    if not had_bias:
        text_head.bias = None
    with torch.no_grad():
        for p, value in saved:
            p.copy_(value)


def layout(tokenizer, instruction: str, n_speech: int) -> list[int]:
    """A ChatML-like prompt laid out by hand (ids as osum.template defines them)."""
    ids = tokenizer.encode(instruction, add_special_tokens=False)
    if n_speech:
        ids += [speech_table_id(4097)] + [SPEECH] * n_speech + [speech_table_id(4098)]
    return ids + tokenizer.encode("answer", add_special_tokens=False)


def prompts_and_speech(tokenizer, hidden: int, with_speech: bool = True):
    """Prompts of different lengths, text-only and (optionally) with speech placeholders, and their speech."""
    n_speech = [7, 0, 3, 0] if with_speech else [0, 0, 0]
    texts = ["what is two plus three", "turn on the light", "one", "five six seven eight nine"][: len(n_speech)]
    prompts = [layout(tokenizer, t, k) for t, k in zip(texts, n_speech)]
    clips = [k for k in n_speech if k]
    if not clips:
        return prompts, None, None
    speech = 0.02 * torch.randn(len(clips), max(clips), hidden, generator=torch.Generator().manual_seed(1))
    return prompts, speech, torch.tensor(clips)


def streaming_layout(text: list[int], speech: list[int], n_text: int = 6, n_speech: int = 18):
    """The training layout of the *_streaming types (reference 5.2): chunks of text and speech alternating
    until the text (with its EOS) runs out, then the rest of the speech (with its S markers)."""
    tokens, phases, t, s = [], [], 0, 0
    while t < len(text):
        tokens += text[t : t + n_text] + speech[s : s + n_speech]
        phases += ["text"] * len(text[t : t + n_text]) + ["speech"] * len(speech[s : s + n_speech])
        t, s = t + n_text, s + n_speech
    return tokens + speech[s:], phases + ["speech"] * len(speech[s:])


def first_new(tokens: list[int]) -> tuple[int, int]:
    """The first step >= 2 whose token was not generated before, and that token."""
    return next((k, t) for k, t in enumerate(tokens) if k >= 2 and t not in tokens[:k])


def set_biases(head, values: dict[int, float]):
    with torch.no_grad():
        for token, value in values.items():
            head.bias[token] = value


def record_decode_inputs(model):
    """Ids each embedding table receives during the decode steps (1-D inputs; the prefill's are 2-D)."""
    seen = {"text": [], "speech": []}
    hooks = [table.register_forward_hook(lambda m, args, out, k=k: seen[k].extend(args[0].tolist())
                                         if args[0].dim() == 1 else None)
             for k, table in (("text", model.text_embed), ("speech", model.speech_embed))]
    return seen, hooks


@pytest.mark.parametrize("with_speech", [True, False])
def test_greedy_text_equals_transformers_generate(backbone, tokenizer, with_speech):
    prompts, speech, lengths = prompts_and_speech(tokenizer, backbone.speech_embed.embedding_dim, with_speech)
    ours = generate(backbone, prompts, speech, lengths, TEXT_PLAN, eos_id=NEVER)
    theirs = backbone.generate(prompts, speech, lengths, eos_id=NEVER, pad_id=tokenizer.pad_token_id,
                               max_new_tokens=TEXT_PLAN.max_new_tokens)
    print(f"\nprompt lengths {[len(p) for p in prompts]}; ours {[g.text_ids for g in ours]}")
    assert [g.text_ids for g in ours] == theirs
    assert all(g.stop_reason == "max_tokens" and set(g.phases) == {"text"} for g in ours)
    step, eos = first_new(ours[0].text_ids)  # an EOS that row 0 reaches at that step: rows finish apart
    ours = generate(backbone, prompts, speech, lengths, TEXT_PLAN, eos_id=eos)
    theirs = backbone.generate(prompts, speech, lengths, eos_id=eos, pad_id=tokenizer.pad_token_id,
                               max_new_tokens=TEXT_PLAN.max_new_tokens)
    print(f"with EOS {eos}: {[(g.text_ids, g.stop_reason) for g in ours]}")
    assert [g.text_ids for g in ours] == theirs
    assert ours[0].stop_reason == "eos" and ours[0].tokens[-1] == eos and len(ours[0].tokens) == step + 1


def test_batched_equals_one_by_one(backbone, tokenizer):
    prompts, speech, lengths = prompts_and_speech(tokenizer, backbone.speech_embed.embedding_dim)
    first = generate(backbone, prompts, speech, lengths, TEXT_PLAN, eos_id=NEVER)
    _, eos = first_new(first[0].text_ids)  # rows reach the text EOS at different steps (or never) and switch to speech
    clip_of = {}
    for i, p in enumerate(prompts):
        if SPEECH in p:
            clip_of[i] = len(clip_of)
    for plan in (TEXT_PLAN, PhasePlan(start_phase="speech", stop="speech_end", max_new_tokens=6),
                 PhasePlan(start_phase="text", stop="text_then_speech", max_new_tokens=10)):
        batched = generate(backbone, prompts, speech, lengths, plan, eos_id=eos)
        for i, p in enumerate(prompts):
            c = clip_of.get(i)
            one = generate(backbone, [p], None if c is None else speech[c : c + 1],
                           None if c is None else lengths[c : c + 1], plan, eos_id=eos)[0]
            assert (one.tokens, one.phases, one.stop_reason) == (batched[i].tokens, batched[i].phases,
                                                                 batched[i].stop_reason)
        print(f"\n{plan.stop}: phases per row {[''.join(ph[0] for ph in g.phases) for g in batched]}")
    assert len({"".join(ph[0] for ph in g.phases) for g in batched}) > 1  # rows switched at different steps


def test_tts_starts_from_the_boundary_and_stops_at_the_next(rigged, tokenizer):
    model = rigged
    prompts = [layout(tokenizer, "turn on the light", 0), layout(tokenizer, "one", 0)]
    # Greedy with repetition penalty 2 walks down the biases: 10, 11, 12, then S (4 beats 3.5, 3, 2.5).
    set_biases(model.speech_head, {10: 7.0, 11: 6.0, 12: 5.0, S: 4.0})
    plan = PhasePlan(start_phase="speech", stop="speech_end", max_new_tokens=50)
    seen, hooks = record_decode_inputs(model)
    out = generate(model, prompts, None, None, plan, eos_id=NEVER, speech_sampling=Sampling(repetition_penalty=2.0))
    for h in hooks:
        h.remove()
    print(f"\nTTS: tokens {out[0].tokens}, codes {out[0].speech_codes}, stop {out[0].stop_reason}")
    for g in out:
        assert g.tokens == [10, 11, 12, S] and g.phases == ["speech"] * 4
        assert g.speech_codes == [10, 11, 12] and g.text_ids == [] and g.stop_reason == "speech_end"
    assert seen["text"] == [] and seen["speech"] == [10, 10, 11, 11, 12, 12]  # fed back through the speech table
    set_biases(model.speech_head, {7: 9.0})  # never S: max_new_tokens stops it
    out = generate(model, prompts, None, None, PhasePlan(start_phase="speech", stop="speech_end", max_new_tokens=5),
                   eos_id=NEVER)
    print(f"TTS without S: tokens {out[0].tokens}, stop {out[0].stop_reason}")
    assert all(g.tokens == [7] * 5 and g.speech_codes == [7] * 5 and g.stop_reason == "max_tokens" for g in out)


def test_tts_first_input_is_the_boundary_embedding(backbone, tokenizer):
    prompt = layout(tokenizer, "turn on the light", 0)
    out = generate(backbone, [prompt], None, None, PhasePlan(start_phase="speech", stop="speech_end",
                                                             max_new_tokens=1), eos_id=NEVER)[0]
    ids = torch.tensor([prompt + [speech_table_id(S)]])
    hidden = backbone.decoder(inputs_embeds=backbone.embed(ids, None, None)).last_hidden_state[:, -1]
    want = int(backbone.speech_head(hidden).argmax(-1))
    print(f"\nfirst TTS code {out.tokens[0]} = argmax of the speech head after prompt + S: {want}")
    assert out.tokens == [want] and out.phases == ["speech"]


def test_text_then_speech_switches_table_and_head_after_eos(rigged, tokenizer):
    model = rigged
    eos = 3
    set_biases(model.text_head, {20: 8.0, 21: 7.0, 22: 6.0, eos: 5.0})  # penalty 4: 20 21 22 EOS
    set_biases(model.speech_head, {S: 16.0, 10: 14.0, 11: 12.0, 12: 10.0})  # penalty 2: S 10 11 12 S
    plan = PhasePlan.from_dict({"start_phase": "text", "interleave": None, "stop": "text_then_speech",
                                "max_new_tokens": 40})
    prompts = [layout(tokenizer, "what is two plus three", 0), layout(tokenizer, "one", 0)]
    seen, hooks = record_decode_inputs(model)
    out = generate(model, prompts, None, None, plan, eos_id=eos, text_sampling=Sampling(repetition_penalty=4.0),
                   speech_sampling=Sampling(repetition_penalty=2.0))
    for h in hooks:
        h.remove()
    g = out[0]
    print(f"\nS2S: tokens {g.tokens}\n     phases {g.phases}\n     text {g.text_ids} codes {g.speech_codes}")
    for g in out:
        assert g.tokens == [20, 21, 22, eos, S, 10, 11, 12, S]
        assert g.phases == ["text"] * 4 + ["speech"] * 5
        assert g.text_ids == [20, 21, 22] and g.speech_codes == [10, 11, 12] and g.stop_reason == "speech_end"
    # Text tokens (EOS included) go back through the text table, speech tokens through the speech table.
    assert seen["text"] == [t for t in (20, 21, 22, eos) for _ in out]
    assert seen["speech"] == [t for t in (S, 10, 11, 12) for _ in out]


def test_interleave_follows_the_streaming_layout(rigged, tokenizer):
    model = rigged
    eos = 3
    text = list(range(30, 44))  # 14 text tokens + EOS = 15: chunks of 6, 6, 3
    codes = list(range(100, 160))  # S + 60 codes + S = 62 speech tokens (>= 3 x 15)
    set_biases(model.text_head, {**{t: 10.0 - 0.1 * i for i, t in enumerate(text)}, eos: 5.0})
    set_biases(model.speech_head, {S: 12.0, **{c: 10.0 - 0.05 * i for i, c in enumerate(codes)}})
    plan = PhasePlan.from_dict({"start_phase": "text", "interleave": [6, 18], "stop": "text_then_speech",
                                "max_new_tokens": 200})
    out = generate(model, [layout(tokenizer, "one", 0)], None, None, plan, eos_id=eos,
                   text_sampling=Sampling(repetition_penalty=4.0), speech_sampling=Sampling(repetition_penalty=2.0))[0]
    want_tokens, want_phases = streaming_layout(text + [eos], [S] + codes + [S])
    runs = [(ph, sum(1 for _ in grp)) for ph, grp in itertools.groupby(out.phases)]
    print(f"\ninterleave (6, 18): phase runs {runs}, stop {out.stop_reason}")
    assert out.phases == want_phases and out.tokens == want_tokens
    assert runs == [("text", 6), ("speech", 18), ("text", 6), ("speech", 18), ("text", 3), ("speech", 26)]
    assert out.text_ids == text and out.speech_codes == codes and out.stop_reason == "speech_end"


def test_sampling_top_k_one_is_greedy_and_a_seed_reproduces(backbone, tokenizer):
    prompts, speech, lengths = prompts_and_speech(tokenizer, backbone.speech_embed.embedding_dim)
    plan = PhasePlan(start_phase="text", stop="text_eos", max_new_tokens=12)
    greedy = generate(backbone, prompts, speech, lengths, plan, eos_id=NEVER)
    top1 = generate(backbone, prompts, speech, lengths, plan, eos_id=NEVER,
                    text_sampling=Sampling(do_sample=True, top_k=1, temperature=1.5),
                    generator=torch.Generator().manual_seed(5))
    assert [g.tokens for g in top1] == [g.tokens for g in greedy]
    hot = Sampling(do_sample=True, top_k=0, top_p=1.0, temperature=2.0)
    runs = [generate(backbone, prompts, speech, lengths, plan, eos_id=NEVER, text_sampling=hot,
                     generator=torch.Generator().manual_seed(seed)) for seed in (7, 7, 8)]
    print(f"\ngreedy {greedy[0].tokens}\nseed 7 {runs[0][0].tokens}\nseed 7 {runs[1][0].tokens}\n"
          f"seed 8 {runs[2][0].tokens}")
    assert [g.tokens for g in runs[0]] == [g.tokens for g in runs[1]]
    assert [g.tokens for g in runs[0]] != [g.tokens for g in runs[2]]
    assert [g.tokens for g in runs[0]] != [g.tokens for g in greedy]


def test_repetition_penalty_lowers_a_repeated_tokens_probability(rigged, tokenizer):
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    seen = torch.tensor([[True, False, True, False]])
    before = logits.softmax(-1)
    after = process_logits(logits, seen, Sampling(repetition_penalty=1.5)).softmax(-1)
    print(f"\nprobabilities {before.tolist()} -> {after.tolist()} (tokens 0 and 2 already generated)")
    assert after[0, 0] < before[0, 0] and after[0, 2] < before[0, 2]
    assert after[0, 1] > before[0, 1] and after[0, 3] > before[0, 3]
    # In the loop: without a penalty greedy repeats its best token; with one it moves on to the next.
    set_biases(rigged.text_head, {50: 3.0, 51: 2.0})
    prompts = [layout(tokenizer, "one", 0)]
    plain = generate(rigged, prompts, None, None, TEXT_PLAN, eos_id=NEVER)[0].tokens
    penalised = generate(rigged, prompts, None, None, TEXT_PLAN, eos_id=NEVER,
                         text_sampling=Sampling(repetition_penalty=2.0))[0].tokens
    print(f"greedy {plain}; with penalty 2: {penalised}")
    assert plain == [50] * 8 and penalised[:2] == [50, 51]


def test_plans_and_sampling_from_plain_data():
    plan = PhasePlan.from_dict({"start_phase": "text", "interleave": [6, 18], "stop": "text_then_speech",
                                "max_new_tokens": 2000})
    assert plan.interleave == (6, 18)
    # every output type of the template's registry gives a valid plan and sampling (reference 5.6 defaults)
    settings = {name: settings_for(o) for name, o in OUTPUT_TYPES.items()}
    assert settings["text2token"][0].start_phase == "speech" and settings["text2token"][0].stop == "speech_end"
    assert settings["text2token"][2] == Sampling(True, 15, 0.8, 1.2, 1.0)
    assert settings["text2text"][1:] == (GREEDY, GREEDY)
    assert settings["text"][1] == Sampling(True, 5, 0.9, 1.0, 1.05)
    assert settings["speech2text_token_streaming"][0].interleave == (6, 18)
    with pytest.raises(ValueError, match="starts in the speech phase"):
        PhasePlan(start_phase="text", stop="speech_end")
    with pytest.raises(ValueError, match="interleave needs"):
        PhasePlan(start_phase="text", interleave=(6, 18), stop="text_eos")
    with pytest.raises(ValueError, match="unknown keys"):
        Sampling.from_dict({"topk": 3})


def test_reread_feeds_the_reply_again_in_chunks_between_speech_chunks(rigged, tokenizer):
    """template.s2s_reread: think, marker, reply, EOS are generated; then the reply (not the think) is fed again two
    tokens at a time, each followed by three generated speech tokens, as the builder lays it out."""
    model = rigged
    eos, marker = 3, 60
    think, text = list(range(50, 53)), list(range(30, 35))  # 3 think tokens + marker; 5 reply tokens + EOS
    codes = list(range(100, 110))
    set_biases(model.text_head, {**{t: 12.0 - 0.1 * i for i, t in enumerate(think)}, marker: 11.0,
                                 **{t: 10.0 - 0.1 * i for i, t in enumerate(text)}, eos: 5.0})
    set_biases(model.speech_head, {S: 12.0, **{c: 10.0 - 0.05 * i for i, c in enumerate(codes)}})
    plan = PhasePlan.from_dict({"start_phase": "text", "reread": [2, 3], "think_end": marker,
                                "stop": "text_then_speech", "max_new_tokens": 200})
    seen, hooks = record_decode_inputs(model)
    out = generate(model, [layout(tokenizer, "one", 0)], None, None, plan, eos_id=eos,
                   text_sampling=Sampling(repetition_penalty=4.0), speech_sampling=Sampling(repetition_penalty=2.0))[0]
    for h in hooks:
        h.remove()
    speech = [S, *codes, S]
    reread = [30, 31, *speech[0:3], 32, 33, *speech[3:6], 34, *speech[6:9], *speech[9:]]
    assert out.tokens == [*think, marker, *text, eos, *reread]
    assert out.phases == ["text"] * 10 + ["reread"] * 2 + ["speech"] * 3 + ["reread"] * 2 + ["speech"] * 3 + \
        ["reread"] + ["speech"] * 6
    assert out.text_ids == [*think, marker, *text] and out.speech_codes == codes and out.stop_reason == "speech_end"
    assert seen["text"] == [*think, marker, *text, eos, 30, 31, 32, 33, 34]  # the reread goes in as text
