"""Rules of the mini dialogue corpus: the assistant's reply and its two think forms, given the user's words
and voice cues (age, gender, emotion, sound event), and the multi-turn memory items.

Pure text, no audio (``data_prep.dialogue_corpus`` renders the speech). A reply is a function of both the
words and the cues, so a model that ignores the voice is measurably wrong:

    reply = "{address}, {emotion phrase}. {event phrase}. {content}."     (empty phrases left out)

- address from age and gender (six forms: "young man" ... "grandma"),
- emotion phrase and the reply emotion from the user's emotion (NEUTRAL says nothing),
- event phrase from the sound event (none says nothing),
- content from the words: a command is confirmed ("sure, i will ..."), a question answered, a memory
  query answered from an earlier turn.

``reply_parts`` gives each part apart, which the test shards keep (``expect.parts``) so that
``osum.evaluate echat`` scores each cue from the data, without these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

ADDRESS = {("CHILD", "MALE"): "young man", ("CHILD", "FEMALE"): "young lady", ("ADULT", "MALE"): "sir",
           ("ADULT", "FEMALE"): "madam", ("OLD", "MALE"): "grandpa", ("OLD", "FEMALE"): "grandma"}
# user emotion -> (reply emotion, phrase)
EMOTION_REPLY = {"NEUTRAL": ("NEUTRAL", ""), "HAPPY": ("CHEERFUL", "glad you are happy"),
                 "SAD": ("COMFORTING", "please do not be sad"), "ANGER": ("APOLOGETIC", "sorry you are upset")}
REPLY_EMOTIONS = sorted({emotion for emotion, _ in EMOTION_REPLY.values()})
EVENT_PHRASE = {None: "", "COUGH": "bless you", "LAUGH": "nice laugh", "BELL": "the bell rang",
                "ALARM": "an alarm is ringing"}
NO_EVENT = "NONE"  # the sound-event tag of a turn without one

# Who the user is, in words (language think).
PERSON = {("CHILD", "MALE"): "little boy", ("CHILD", "FEMALE"): "little girl", ("ADULT", "MALE"): "man",
          ("ADULT", "FEMALE"): "woman", ("OLD", "MALE"): "old man", ("OLD", "FEMALE"): "old woman"}
MOOD = {"NEUTRAL": "calm", "HAPPY": "happy", "SAD": "sad", "ANGER": "angry"}
EVENT_CLAUSE = {None: "", "COUGH": " who is coughing", "LAUGH": " who is laughing", "BELL": " while a bell rings",
                "ALARM": " while an alarm rings"}
MANNER = {"NEUTRAL": "plainly", "CHEERFUL": "cheerfully", "COMFORTING": "gently and comfort {them}",
          "APOLOGETIC": "with an apology"}
PRONOUN = {"MALE": "him", "FEMALE": "her"}

# Memory items: what a first turn says, how the assistant acknowledges it, what a later turn asks, the answer.
NAMES = ["alice", "peter", "anna", "david", "emma", "james", "lucy", "tom"]
TIMER_MINUTES = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "fifteen", "twenty",
                 "thirty"]
COMPLAINTS = {"my head hurts": "your head hurts", "my back hurts": "your back hurts",
              "my tooth hurts": "your tooth hurts", "i lost my keys": "you lost your keys",
              "i missed my bus": "you missed your bus", "my phone is broken": "your phone is broken"}


@dataclass(frozen=True)
class MemoryKind:
    """One kind of multi-turn memory: the setting turn, its acknowledgement, the query and its answer."""

    name: str
    values: tuple[str, ...]
    say: str  # the user's first turn, with {v}
    acknowledge: str  # the assistant's content for it
    ask: str  # the later user turn
    answer: str  # the assistant's content for the later turn, with {v} (or {r}: the value restated)


MEMORY_KINDS = {
    "name": MemoryKind("name", tuple(NAMES), "my name is {v}", "nice to meet you, {v}", "what is my name",
                       "your name is {v}"),
    "timer": MemoryKind("timer", tuple(TIMER_MINUTES), "set a timer for {v} minutes",
                        "sure, i will set a timer for {v} minutes", "how long is my timer",
                        "your timer is {v} minutes"),
    "complaint": MemoryKind("complaint", tuple(COMPLAINTS), "{v}", "oh no, {r}", "what was my problem",
                            "you said {r}"),
}


def fill(text: str, value: str) -> str:
    return text.format(v=value, r=COMPLAINTS.get(value, value))


@dataclass(frozen=True)
class Cues:
    age: str
    gender: str
    emotion: str
    event: str | None = None

    @property
    def reply_emotion(self) -> str:
        return EMOTION_REPLY[self.emotion][0]


def command_content(command: str) -> str:
    return f"sure, i will {command}"


def question_content(answer: str) -> str:
    return f"the answer is {answer}"


def reply_parts(cues: Cues, content: str) -> dict[str, str]:
    """The cue-dependent parts of a reply and its content, each as it appears in the reply text."""
    return {"address": ADDRESS[(cues.age, cues.gender)], "emotion": EMOTION_REPLY[cues.emotion][1],
            "event": EVENT_PHRASE[cues.event], "content": content}


def reply_text(parts: dict[str, str]) -> str:
    head = ", ".join(p for p in (parts["address"], parts["emotion"]) if p)
    return ". ".join(p for p in (head, parts["event"], parts["content"]) if p) + "."


def language_think(cues: Cues, words: str) -> str:
    """The natural-language think: who speaks, how, what they say, how to answer."""
    person = f"{MOOD[cues.emotion]} {PERSON[(cues.age, cues.gender)]}"
    article = "an" if person[0] in "aeiou" else "a"
    manner = MANNER[cues.reply_emotion].format(them=PRONOUN[cues.gender])
    return f"{article} {person}{EVENT_CLAUSE[cues.event]} says: {words}. i should answer {manner}."


def think_parts(cues: Cues) -> dict[str, str]:
    """The cue phrases of the language think, each as it appears in it."""
    return {"person": PERSON[(cues.age, cues.gender)], "mood": MOOD[cues.emotion],
            "event": EVENT_CLAUSE[cues.event].strip()}


def tokenizer_texts() -> list[str]:
    """Every fixed phrase of the rules, for the mini corpus tokenizer (so the dialogue stage's texts are short)."""
    texts = [*ADDRESS.values(), *(p for _, p in EMOTION_REPLY.values()), *EVENT_PHRASE.values(),
             *PERSON.values(), *MOOD.values(), *EVENT_CLAUSE.values(), *COMPLAINTS.values(), *COMPLAINTS,
             "user's words: , age: , gender: , emotion: , sound event: , reply emotion: ",
             "sure, i will", "the answer is", "says: i should answer", *NAMES]
    for kind in MEMORY_KINDS.values():
        for value in kind.values:
            texts += [fill(t, value) for t in (kind.say, kind.acknowledge, kind.ask, kind.answer)]
    for manner in MANNER.values():
        texts += [manner.format(them=p) for p in PRONOUN.values()]
    return [t for t in dict.fromkeys(texts) if t]


def reply_tags() -> list[str]:
    """Tags the dialogue stage writes that the label sets do not hold: reply emotions and "no event"."""
    return [f"<{e}>" for e in REPLY_EMOTIONS] + [f"<{NO_EVENT}>"]
