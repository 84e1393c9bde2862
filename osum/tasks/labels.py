"""Label inventories of the paralinguistic tag types, and how a label becomes a tag string.

A label is stored in a sample's JSON as a bare upper-case word (``"FEMALE"``); in targets and
hypotheses it appears as a tag (``"<FEMALE>"``). The inventories below are the defaults: the
original OSUM sets (reference section 2.2) plus the proxies the synthetic mini corpus uses. A recipe
may replace any set through the ``tasks.label_sets`` config key.
"""

from __future__ import annotations

import re

# Original OSUM inventories (reference section 2.2), upper-case ASCII forms.
OSUM_LABEL_SETS: dict[str, list[str]] = {
    "gender": ["MALE", "FEMALE"],
    "age": ["CHILD", "ADULT", "OLD"],
    "emotion": ["NEUTRAL", "HAPPY", "SAD", "ANGER", "SURPRISE", "FEAR", "DISGUST", "OTHER"],
    "style": ["NEWS", "HORROR", "FAIRY_TALE", "CUSTOMER_SERVICE", "POETRY", "AUDIOBOOK", "CHAT", "OTHER"],
    "events": ["LAUGH", "COUGH", "CRY", "SCREAM", "SIGH", "THROAT_CLEARING", "SNEEZE", "OTHER"],
}

# The mini corpus: every label is a documented proxy made from a voice or a sound effect
# (see data_prep/mini_corpus.py). Smaller sets so that a tiny model learns them in minutes.
MINI_LABEL_SETS: dict[str, list[str]] = {
    "gender": ["MALE", "FEMALE"],
    "age": ["CHILD", "ADULT", "OLD"],
    "emotion": ["NEUTRAL", "HAPPY", "SAD", "ANGER"],
    "style": ["NEWS", "CHAT", "WHISPER"],
    "events": ["BELL", "ALARM", "COUGH", "LAUGH"],
}

# Synonyms seen in original data (reference section 2.2), mapped onto the canonical label.
LABEL_ALIASES: dict[str, dict[str, str]] = {
    "age": {"YOUTH": "ADULT", "MIDDLE_AGE": "ADULT", "MIDDLE": "ADULT"},
    "emotion": {"ANGRY": "ANGER"},
}

_TAG_RE = re.compile(r"<([^<>]+)>")


def tag(label: str) -> str:
    """``"FEMALE"`` -> ``"<FEMALE>"``."""
    return f"<{label.strip().upper()}>"


def find_tags(text: str) -> list[str]:
    """All ``<...>`` labels in ``text``, upper-cased, without brackets, in order."""
    return [m.group(1).strip().upper() for m in _TAG_RE.finditer(text)]


def strip_tags(text: str) -> str:
    """``text`` with every ``<...>`` removed and whitespace collapsed."""
    return " ".join(_TAG_RE.sub(" ", text).split())


def canonical(kind: str, label: str) -> str:
    """Upper-case ``label`` and map known synonyms of tag type ``kind`` onto the canonical form."""
    up = label.strip().upper().strip("<>")
    return LABEL_ALIASES.get(kind, {}).get(up, up)


def all_tags(label_sets: dict[str, list[str]]) -> list[str]:
    """Every tag string of the given inventories, for tokenizers that keep tags whole."""
    seen: list[str] = []
    for labels in label_sets.values():
        for label in labels:
            t = tag(label)
            if t not in seen:
                seen.append(t)
    return seen


def every_tag() -> list[str]:
    """Every tag of the original OSUM and the mini corpus inventories (the tags ``add-tags`` makes tokens)."""
    return all_tags({**{f"osum_{k}": v for k, v in OSUM_LABEL_SETS.items()},
                     **{f"mini_{k}": v for k, v in MINI_LABEL_SETS.items()}})
