"""The sequence builder lays out every task and every output type token by token, in both layouts."""

import pytest

from osum.tasks import TaskRegistry
from osum.template import (
    IGNORE,
    OUTPUT_TYPES,
    SPEECH,
    SequenceBuilder,
    Speech,
    SpeechTokens,
    TemplateConfig,
    Text,
    Turn,
    speech_table_id,
)

SAMPLE = {"txt": "three seven one", "words": [["three", 0.2, 0.5], ["seven", 0.6, 0.9], ["one", 1.0, 1.3]],
          "labels": {"gender": "FEMALE", "age": "ADULT", "emotion": "HAPPY", "style": "NEWS", "events": ["BELL"]},
          "answer": "five"}
SYSTEM = "You are a test assistant."
S, BOS, EOS_IN = speech_table_id(4096), speech_table_id(4097), speech_table_id(4098)


def text_of(tok, ids):
    return tok.decode([i for i in ids if i >= 0], skip_special_tokens=False)


@pytest.mark.parametrize("layout", ["chatml", "osum"])
def test_every_task_layout_token_by_token(tokenizer, layout):
    eos = "<|im_end|>" if layout == "chatml" else "<|endoftext|>"
    cfg = TemplateConfig(layout=layout, eos_token=eos, system_prompts={"text": SYSTEM})
    builder = SequenceBuilder(tokenizer, cfg)
    registry = TaskRegistry.from_config()
    n_speech = 7
    for task in registry.tasks.values():  # the tasks of output type "text" (instruction + speech -> text)
        if task.output_type != "text" or not registry.can_serve(task, SAMPLE):
            continue
        target = registry.render(task, SAMPLE)
        instruction = registry.prompts[task.tag][0]
        seq = builder.build("text", [Turn.spoken(n_speech, instruction, text=target)])
        ids, tg = seq.input_ids, seq.text_targets
        assert len(ids) == len(tg) == len(seq.speech_targets)
        assert seq.speech_targets == [IGNORE] * len(ids)
        # speech: BOS row, n placeholders, EOS row, contiguous
        b = ids.index(BOS)
        assert ids[b + 1 : b + 1 + n_speech] == [SPEECH] * n_speech
        assert ids[b + 1 + n_speech] == EOS_IN
        assert sum(i == SPEECH for i in ids) == n_speech and seq.n_speech == [n_speech]
        before, after = text_of(tokenizer, ids[:b]), text_of(tokenizer, ids[b + n_speech + 2 :])
        if layout == "chatml":
            assert before == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{instruction}"
            assert after == f"<|im_end|>\n<|im_start|>assistant\n{target}"
        else:
            assert before == instruction
            assert after == target
        # targets: everything before the answer ignored; then the answer shifted by one, then EOS
        answer = tokenizer.encode(target, add_special_tokens=False)
        first = len(ids) - len(answer)
        assert tg[: first - 1] == [IGNORE] * (first - 1)
        assert tg[first - 1 :] == answer + [builder.eos_id]
        assert ids[first:] == answer
        assert seq.n_supervised == len(answer) + 1


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def reference_layout(tok, out, system, user_ids, reply_text_ids, codes, eos):
    """The reference layout (osum-original.md 1.7 and 5.2) of one ChatML turn, written out independently:
    full token list and, per token, the head that must predict it (None: context). A think type's reply opens
    with ``<think>`` as context: the prompt ends inside the think section."""
    head = enc(tok, f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
    tail = enc(tok, "<|im_end|>\n<|im_start|>assistant\n" + ("<think>" if "think" in OUTPUT_TYPES[out].target else ""))
    text = [(i, "text") for i in reply_text_ids] + ([(eos, "text")] if "eos" in OUTPUT_TYPES[out].target else [])
    speech = [(speech_table_id(c), "speech") for c in ([4096, *codes, 4096] if codes is not None else [])]
    if OUTPUT_TYPES[out].interleave:
        reply, t, s = [], 0, 0
        while t < len(text):
            reply += text[t : t + 6] + speech[s : s + 18]
            t, s = t + 6, s + 18
        reply += speech[s:]
    else:
        reply = text + speech
    return [(i, None) for i in head + user_ids + tail] + reply


def targets_of(pieces):
    text = [IGNORE] * (len(pieces) - 1)
    speech = [IGNORE] * (len(pieces) - 1)
    for k in range(1, len(pieces)):
        i, ch = pieces[k]
        if ch == "text":
            text[k - 1] = i
        elif ch == "speech":
            speech[k - 1] = -i - 2
    return text, speech


# literal system prompts of the released models (reference 1.7), spot-checked
REFERENCE_SYSTEM = {
    "text2token": "You are OSUM-chat, a speech synthesis assistant by ASLP Lab. You generate natural and fluent speech "
                  "from text input.",
    "s2t_chat": "You are OSUM-chat, a speech-to-text dialogue assistant by ASLP Lab. You understand both the meaning "
                "and paralinguistic cues in speech then respond exclusively with appropriate text.",
}


@pytest.mark.parametrize("out", sorted(OUTPUT_TYPES))
def test_every_output_type_token_by_token(tokenizer, out):
    builder = SequenceBuilder(tokenizer)
    system = REFERENCE_SYSTEM.get(out, builder.system_prompt(out))
    assert builder.system_prompt(out) == system and system.startswith("You are OSUM-chat")
    o = OUTPUT_TYPES[out]
    codes = list(range(10, 10 + 40)) if o.speech_out else None
    reply = "five six" if "text" in o.target else None
    think = "the user is happy" if "think" in o.target else None
    user = [Text("turn on the light")] if o.user == ("text",) else [Speech(5)]
    user_ids = enc(tokenizer, "turn on the light") if o.user == ("text",) else [BOS] + [SPEECH] * 5 + [EOS_IN]
    reply_text = (f"{think}<think end>" if think else "") + (reply or "")
    seq = builder.build(out, [Turn(user, think=think, text=reply, speech=codes)])
    want = reference_layout(tokenizer, out, system, user_ids, enc(tokenizer, reply_text) if reply_text else [], codes,
                            builder.eos_id)
    assert seq.input_ids == [i for i, _ in want][:-1]
    assert (seq.text_targets, seq.speech_targets) == targets_of(want)
    prompt = builder.prompt(out, [Turn(user)])
    assert seq.input_ids[: len(prompt)] == prompt and prompt == [i for i, ch in want[: len(prompt)]]
    assert all(ch is None for _, ch in want[: len(prompt)]) and want[len(prompt)][1] is not None
    print(f"{out}: {len(seq)} positions, {seq.n_text_targets} text targets, {seq.n_speech_targets} speech targets")


def test_history_has_one_layout_for_training_and_generation(tokenizer):
    """Each earlier turn is laid out exactly as that turn's own training sample, masked, so what the model
    generated for turn 1 (its reply tokens) followed by the next user turn is the prompt of turn 2."""
    builder = SequenceBuilder(tokenizer)
    out = "speech2text_token_history"
    turn1 = Turn([Speech(4)], text="hello", speech=[1, 2, 3])
    turn2 = Turn([Speech(3)], text="bye", speech=[4, 5])
    alone = builder.build(out, [turn1])
    both = builder.build(out, [turn1, turn2])
    # generation: the prompt of turn 1, then what the model generated (the target tokens), then the next turn
    generated = [t if t != IGNORE else s for t, s in zip(alone.text_targets, alone.speech_targets)]
    generated = [g if g >= 0 and alone.speech_targets[k] == IGNORE else speech_table_id(g)
                 for k, g in enumerate(generated) if g != IGNORE]
    session = builder.prompt(out, [turn1]) + generated + enc(tokenizer, "\n<|im_start|>user\n")
    prompt2 = builder.prompt(out, [turn1, turn2])
    assert prompt2[: len(session)] == session
    assert prompt2[len(session):] == [BOS, *[SPEECH] * 3, EOS_IN, *enc(tokenizer, "<|im_end|>\n<|im_start|>assistant\n")]
    assert both.input_ids[: len(prompt2)] == prompt2
    # history is not trained; the current turn is, exactly as alone
    assert both.n_text_targets == len(enc(tokenizer, "bye")) + 1 and both.n_speech_targets == 4  # S 4 5 S
    assert all(t == IGNORE for t in both.text_targets[: len(prompt2) - 1])
    assert both.n_speech == [4, 3]
    with pytest.raises(ValueError, match="takes no history"):
        builder.build("speech2text_token", [turn1, turn2])


def test_unknown_tag_is_hidden_from_input_and_loss(tokenizer):
    builder = SequenceBuilder(tokenizer)
    seq = builder.build("s2t_chat_think", [Turn([Speech(2)], think="Age: <&&>, Gender: <MALE>", text="hi")])
    think = enc(tokenizer, "<think>Age: ")
    start = seq.input_ids.index(EOS_IN) + len(enc(tokenizer, "<|im_end|>\n<|im_start|>assistant\n")) + 1
    assert seq.text_targets[start - 1] == IGNORE  # the opener is context: the output type decides to think
    ids = seq.input_ids[start:]
    lt, gt = enc(tokenizer, "<"), enc(tokenizer, ">")
    assert ids[: len(think) + 2] == think + lt + gt  # "&&" is not in the input: nothing can attend to it
    assert enc(tokenizer, "&&")[0] not in seq.input_ids
    # the position of "<" is not trained to predict what follows (the unknown label); its neighbours are
    k = start + len(think)
    assert seq.text_targets[k - 1] == lt[0] and seq.text_targets[k] == IGNORE and seq.text_targets[k + 1] != IGNORE


def test_prompt_is_training_prefix_and_user_parts_are_checked(tokenizer):
    builder = SequenceBuilder(tokenizer)
    seq = builder.build("text", [Turn.spoken(4, "Transcribe the speech.", text="one two")])
    assert seq.input_ids[: len(builder.prompt("text", [Turn.spoken(4, "Transcribe the speech.")]))] == \
        builder.prompt("text", [Turn.spoken(4, "Transcribe the speech.")])
    with pytest.raises(ValueError, match="takes user parts"):
        builder.build("s2t_chat", [Turn([Text("no speech here")], text="x")])
    with pytest.raises(ValueError, match="speech codes must be in"):
        builder.build("text2token", [Turn([Text("hi")], speech=[4096])])
    with pytest.raises(ValueError, match="too few"):
        builder.build("text2token_streaming", [Turn([Text("hi")], text="one two three four five", speech=[1])])
    tokens_in = builder.build("text2text", [Turn([Text("q")], text="a")])
    assert tokens_in.n_speech == []
    with pytest.raises(ValueError, match="takes user parts"):
        builder.build("text2text", [Turn([SpeechTokens((1, 2))], text="a")])


def test_parse_splits_think_and_keeps_speech(tokenizer):
    builder = SequenceBuilder(tokenizer)
    ids = enc(tokenizer, "calm adult<think end>five six")  # generation starts after the prompt's <think>
    reply = builder.parse("speech2text_token_think", ids, [3, 4])
    assert (reply.think, reply.text, reply.speech) == ("calm adult", "five six", [3, 4])
    assert builder.parse("s2t_chat_think", enc(tokenizer, "calm adult five six")).think is None  # never closed
    assert builder.parse("s2t_chat", enc(tokenizer, "five")).think is None


def test_speech_length_and_bad_markers(tokenizer):
    builder = SequenceBuilder(tokenizer)
    assert [builder.speech_length(n) for n in (1, 8, 9, 16, 17, 3000)] == [1, 1, 2, 2, 3, 375]
    with pytest.raises(ValueError, match="template.eos_token"):
        SequenceBuilder(tokenizer, TemplateConfig(eos_token="not a single token"))
    with pytest.raises(ValueError, match="template.layout"):
        SequenceBuilder(tokenizer, TemplateConfig(layout="llama"))


@pytest.mark.parametrize("text", ["one two three", "  leading and trailing  ", "Tom's <|endoftext|> café 42.",
                                  "<|im_start|>user\nhello<|im_end|>\n", "\t\nnew lines\n\n", "ÅÄÖ 漢字 🙂"])
def test_encode_gives_the_tokenizers_own_ids(tokenizer, text):
    builder = SequenceBuilder(tokenizer)
    assert builder._backend is not None  # the fast path is the one under test
    assert builder.encode(text) == tokenizer.encode(text, add_special_tokens=False)
