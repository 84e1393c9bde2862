"""The age and emotion proxy sets: the relative set as built before, the salient set's pitch and tempo measured."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from data_prep import mini_corpus, mini_effects
from data_prep.voices import median_f0
from osum.data.shards import SAMPLE_RATE

VOICE = "flite-kal16"  # male, median F0 about 106 Hz: a clean autocorrelation F0
WORDS = "one two three four five six".split()


def _plan(age: str, emotion: str, proxies: str) -> dict[str, Any]:
    return {"key": f"{age}_{emotion}_{proxies}", "voice": VOICE, "domain": "digits", "words": WORDS, "answer": None,
            "labels": {"gender": "MALE", "age": age, "emotion": emotion, "style": "NEWS"},
            "gaps": [0.1] * (len(WORDS) - 1), "lead": 0.2, "trail": 0.2, "seed": 7, "event": None,
            "proxies": proxies}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str, str], dict[str, Any]]:
    combos = [(age, emotion, proxies) for proxies in ("relative", "salient", "marked")
              for age, emotion in (("ADULT", "NEUTRAL"), ("ADULT", "HAPPY"), ("CHILD", "NEUTRAL"), ("OLD", "NEUTRAL"))]
    plans = [_plan(*combo) for combo in combos]
    mini_corpus._fill_word_bank(plans, workers=1)
    out = {}
    for combo, plan in zip(combos, plans):
        audio, meta = mini_corpus.render_sample(plan)
        words = [audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)] for _, start, end in meta["words"]]
        out[combo] = {"audio": audio, "words": words,
                      "f0": [median_f0(w) for w in words], "seconds": sum(len(w) for w in words) / SAMPLE_RATE}
    return out


def test_time_effects_per_set() -> None:
    relative, salient = mini_effects.PROXY_SETS["relative"], mini_effects.PROXY_SETS["salient"]
    assert relative.time_effects("CHILD", "HAPPY") == [(1.32, 120)]  # the numbers the corpora were built with
    assert relative.time_effects("OLD", "SAD") == [(0.765, 0)]
    assert salient.time_effects("CHILD", "HAPPY") == [(1.0, 300), (1.0, 550)]
    assert mini_effects.PROXY_SETS["marked"].time_effects("CHILD", "HAPPY") == [(1.0, 300), (1.0, 700)]
    assert all(salient.time_effects(age, emotion)[0][0] == 1.0 for age in ("CHILD", "ADULT", "OLD")
               for emotion in ("NEUTRAL", "HAPPY", "SAD", "ANGER"))
    doc = mini_effects.proxies_doc("salient")
    assert doc["age"]["CHILD"].startswith("pitch +300") and doc["style"] == mini_effects.PROXIES["style"]
    assert mini_effects.proxies_doc("relative") == mini_effects.PROXIES and set(mini_effects.PROXY_CHANGES) == set(mini_effects.PROXY_SETS)


def _cents(ratio: float) -> float:
    return 1200 * float(np.log2(ratio))


def test_salient_happy_bounces_between_words(rendered: dict) -> None:
    for proxies, expected in (("relative", 0), ("salient", 250), ("marked", 400)):
        f0 = rendered[("ADULT", "HAPPY", proxies)]["f0"]
        step = _cents(np.median(f0[1::2]) / np.median(f0[0::2]))
        assert abs(step - expected) < 60, (proxies, f0)


def test_salient_child_pitch_and_no_tempo(rendered: dict) -> None:
    adult = rendered[("ADULT", "NEUTRAL", "salient")]
    for proxies, cents in (("relative", 120), ("salient", 300)):
        child = rendered[("CHILD", "NEUTRAL", proxies)]
        assert abs(_cents(np.median(child["f0"]) / np.median(adult["f0"])) - cents) < 60
    # relative CHILD is 1.2x faster; salient words keep their length (within the re-trim of each word)
    assert rendered[("CHILD", "NEUTRAL", "relative")]["seconds"] < 0.85 * adult["seconds"]
    for combo in (("CHILD", "NEUTRAL", "salient"), ("OLD", "NEUTRAL", "salient"), ("ADULT", "HAPPY", "salient")):
        assert rendered[combo]["seconds"] == pytest.approx(adult["seconds"], rel=0.06)


def _modulation(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    """Strength of the amplitude envelope's modulation between ``low_hz`` and ``high_hz`` (voiced part)."""
    hop = SAMPLE_RATE // 100
    envelope = np.sqrt(np.convolve(audio**2, np.ones(hop) / hop, mode="same"))[::hop]
    voiced = envelope[envelope > 0.2 * envelope.max()]
    spectrum = np.abs(np.fft.rfft(voiced - voiced.mean()))
    freqs = np.fft.rfftfreq(len(voiced), 1 / 100)
    return float(spectrum[(freqs > low_hz) & (freqs < high_hz)].max() / voiced.sum())


def test_salient_old_modulation_is_deeper(rendered: dict) -> None:
    """Tremolo depth read from the 5.5 Hz envelope: 60% for the salient set, 40% for the relative."""
    relative = _modulation(rendered[("OLD", "NEUTRAL", "relative")]["audio"], 4.5, 6.5)
    salient = _modulation(rendered[("OLD", "NEUTRAL", "salient")]["audio"], 4.5, 6.5)
    adult = _modulation(rendered[("ADULT", "NEUTRAL", "salient")]["audio"], 4.5, 6.5)
    assert salient > 1.1 * relative and relative > 1.3 * adult


def test_marked_child_flutter_and_happy_without_treble(rendered: dict) -> None:
    child = _modulation(rendered[("CHILD", "NEUTRAL", "marked")]["audio"], 10.0, 12.0)
    assert child > 2 * _modulation(rendered[("CHILD", "NEUTRAL", "salient")]["audio"], 10.0, 12.0)

    def treble_share(audio: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(audio)) ** 2
        return float(power[np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE) > 3000].sum() / power.sum())

    neutral = treble_share(rendered[("ADULT", "NEUTRAL", "marked")]["audio"])
    assert treble_share(rendered[("ADULT", "HAPPY", "salient")]["audio"]) > 2 * neutral  # +9 dB shelf
    assert treble_share(rendered[("ADULT", "HAPPY", "marked")]["audio"]) < 1.5 * neutral
