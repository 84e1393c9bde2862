"""The sequence builder lays out every task token by token, in both layouts."""

import pytest

from osum.tasks import TaskRegistry
from osum.template import IGNORE, SPEECH, SequenceBuilder, TemplateConfig, speech_table_id

SAMPLE = {"txt": "three seven one", "words": [["three", 0.2, 0.5], ["seven", 0.6, 0.9], ["one", 1.0, 1.3]],
          "labels": {"gender": "FEMALE", "age": "ADULT", "emotion": "HAPPY", "style": "NEWS", "events": ["BELL"]},
          "answer": "five"}
SYSTEM = "You are a test assistant."


def text_of(tok, ids):
    return tok.decode([i for i in ids if i >= 0], skip_special_tokens=False)


@pytest.mark.parametrize("layout", ["chatml", "osum"])
def test_every_task_layout_token_by_token(tokenizer, layout):
    eos = "<|im_end|>" if layout == "chatml" else "<|endoftext|>"
    cfg = TemplateConfig(layout=layout, eos_token=eos, system_prompts={"text": SYSTEM})
    builder = SequenceBuilder(tokenizer, cfg)
    registry = TaskRegistry.from_config()
    n_speech = 7
    for task in registry.tasks.values():
        if not registry.can_serve(task, SAMPLE):
            continue
        target = registry.render(task, SAMPLE)
        instruction = registry.prompts[task.tag][0]
        seq = builder.build("text", instruction, n_speech, target)
        ids, tg = seq.input_ids, seq.targets
        assert len(ids) == len(tg)
        # speech: BOS row, n placeholders, EOS row, contiguous
        b = ids.index(speech_table_id(4097))
        assert ids[b + 1 : b + 1 + n_speech] == [SPEECH] * n_speech
        assert ids[b + 1 + n_speech] == speech_table_id(4098)
        assert sum(i == SPEECH for i in ids) == n_speech
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


def test_prompt_is_training_prefix(tokenizer):
    builder = SequenceBuilder(tokenizer)
    seq = builder.build("text", "Transcribe the speech.", 4, "one two")
    prompt = builder.prompt("text", "Transcribe the speech.", 4)
    assert seq.input_ids[: len(prompt)] == prompt


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
