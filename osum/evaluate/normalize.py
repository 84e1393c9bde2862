"""Text normalization for scoring an ASR judge's written output against spoken-form references.

Whisper writes what it hears the way a person would write it ("Set the heat to 72 degrees.",
"What's 7 plus 8?"); the corpus references are spoken forms ("set the heat to seventy two degrees").
:func:`normalize_for_wer` brings both to one form before WER:

- NFKC, lower case; common contractions expanded ("what's" -> "what is", "don't" -> "do not");
- symbols said as words: ``%`` percent, ``°`` degrees, ``&`` and, ``+`` plus, ``=`` equals, ``×`` times,
  ``$5`` five dollars;
- numerals as words: cardinals ("21" -> "twenty one", "1,000" -> "one thousand", "105" -> "one
  hundred five"), ordinals ("21st" -> "twenty first"), decimals ("2.5" -> "two point five"), clock
  times ("3:00" -> "three o'clock", "3:05" -> "three oh five", "3:15" -> "three fifteen"), numbers with
  a leading zero digit by digit ("007" -> "zero zero seven");
- then :func:`osum.metrics.wer.normalize_text`: tags dropped, punctuation (hyphens included) removed
  except apostrophes inside words, whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata

from osum.metrics.wer import normalize_text

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
ORDINAL_OF = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
              "nine": "ninth", "twelve": "twelfth"}

_CONTRACTIONS = [
    (re.compile(r"\bcan't\b"), "can not"), (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"\blet's\b"), "let us"), (re.compile(r"n't\b"), " not"), (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ll\b"), " will"), (re.compile(r"'ve\b"), " have"), (re.compile(r"\bi'm\b"), "i am"),
    # 's is "is" only after words that cannot take a possessive.
    (re.compile(r"\b(what|that|it|there|here|where|who|how|he|she|when|why)'s\b"), r"\1 is"),
]
_SYMBOLS = [(re.compile(r"\$\s?(\d+(?:\.\d+)?)"), r"\1 dollars"), (re.compile(r"%"), " percent "),
            (re.compile(r"°"), " degrees "), (re.compile(r"&"), " and "), (re.compile(r"\+"), " plus "),
            (re.compile(r"="), " equals "), (re.compile(r"×"), " times ")]
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL_RE = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_DECIMAL_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_INTEGER_RE = re.compile(r"\d+")


def number_to_words(n: int) -> str:
    """A non-negative integer in words, without "and": 7 -> "seven", 105 -> "one hundred five",
    21000 -> "twenty one thousand"."""
    if n < 0:
        raise ValueError(f"number_to_words takes a non-negative integer, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    for scale, name in SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth", 40 -> "fortieth"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in ORDINAL_OF:
        words[-1] = ORDINAL_OF[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def numeral_to_words(digits: str) -> str:
    """A digit string in words; one with a leading zero is read digit by digit ("007")."""
    if len(digits) > 1 and digits.startswith("0"):
        return " ".join(ONES[int(d)] for d in digits)
    return number_to_words(int(digits))


def _time_words(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 24 or minute > 59:
        return f" {numeral_to_words(match.group(1))} {numeral_to_words(match.group(2))} "
    if minute == 0:
        return f" {number_to_words(hour)} o'clock "
    tail = f"oh {ONES[minute]}" if minute < 10 else number_to_words(minute)
    return f" {number_to_words(hour)} {tail} "


def _decimal_words(match: re.Match[str]) -> str:
    return f" {numeral_to_words(match.group(1))} point {' '.join(ONES[int(d)] for d in match.group(2))} "


def normalize_for_wer(text: str) -> str:
    """The scoring form of ``text`` (see the module docstring); apply to references and hypotheses alike."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    for pattern, replacement in _CONTRACTIONS + _SYMBOLS:
        text = pattern.sub(replacement, text)
    text = _THOUSANDS_RE.sub("", text)
    text = _TIME_RE.sub(_time_words, text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", text)
    text = _DECIMAL_RE.sub(_decimal_words, text)
    text = _INTEGER_RE.sub(lambda m: f" {numeral_to_words(m.group(0))} ", text)
    return normalize_text(text)
