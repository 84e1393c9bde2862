"""The web demo in a real headless browser: `python -m osum.web` started on free ports with real tiny checkpoints
trained here (tests/web/web_models.py: an understanding model, a dialogue model, a flow model), Debian's Chromium
driven by selenium through its chromedriver. Each mode is run from the page on a held-out clip of the mini corpus, and what the page shows is checked against what the
service returns for the same input: the transcript and tags, the think section and the reply, a spoken reply as
an <audio> element whose wav is fetched and read, the history of a second turn and "new conversation", the
error of a file that is not audio. A screenshot of each mode is saved (OSUM_WEB_SCREENSHOTS=DIR keeps them)."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from osum.data.audio import resample

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
SERVER_ARGS = ["--max-new-tokens", "40", "--max-reply-tokens", "60", "--max-codes", "60"]
SERVICE_KWARGS = {"max_new_tokens": 40, "max_reply_tokens": 60, "max_codes": 60}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (apt packages chromium, chromium-driver: `make system`)"),
]
selenium = pytest.importorskip("selenium", reason="needs selenium (the dev extras: pip install -e '.[dev]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("OSUM_WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_server(ckpt: Path, flow: Path, log_path: Path) -> tuple[subprocess.Popen, object]:
    cmd = [sys.executable, "-m", "osum.web", "--ckpt", str(ckpt), "--flow", str(flow), "--port", "0", *SERVER_ARGS]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True), log


def address(proc: subprocess.Popen, log_path: Path) -> dict:
    """The page's address, from the line `python -m osum.web` prints once it listens, and what it printed."""
    printed, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line)
        if m := re.match(r"osum web demo: (http://\S+)", line):
            return {"url": m.group(1), "printed": "".join(printed), "log": log_path}
    proc.kill()
    pytest.fail(f"the server did not start: {''.join(printed)}\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def demos(trained_models, tmp_path_factory):
    """One server per speech LLM (both with the flow model), started side by side."""
    folder = tmp_path_factory.mktemp("web_servers")
    started = {name: start_server(trained_models[name], trained_models["flow"], folder / f"{name}.log")
               for name in ("dialogue", "understanding")}
    try:
        yield {name: address(proc, folder / f"{name}.log") for name, (proc, _) in started.items()}
    finally:
        for proc, log in started.values():
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


@pytest.fixture(scope="module")
def services(trained_models):
    """The same models in this process: what the pages must show."""
    from osum.web.service import DemoService

    return {name: DemoService.load(str(trained_models[name]), str(trained_models["flow"]), **SERVICE_KWARGS)
            for name in ("dialogue", "understanding")}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,1500",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a test tone as microphone
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


# ---------------------------------------------------------------------------------------------- page helpers
def by_id(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def text(driver, element_id: str) -> str:
    return by_id(driver, element_id).text


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def upload(driver, path: Path) -> None:
    by_id(driver, "audio-file").send_keys(str(path))
    WebDriverWait(driver, 20).until(lambda d: text(d, "audio-name").startswith(path.name))


def run(driver, timeout: float = 180) -> None:
    body = driver.find_element(By.TAG_NAME, "body")
    before = int(body.get_attribute("data-runs"))
    by_id(driver, "run").click()
    WebDriverWait(driver, timeout).until(lambda d: int(body.get_attribute("data-runs")) > before)


def choose(driver, mode: str) -> None:
    by_id(driver, f"mode-{mode}").click()


def shown(value: str | None) -> str:
    return "(empty)" if value == "" else value


def read_wav(url: str) -> tuple[bytes, int]:
    """The bytes of the wav at ``url`` and its number of samples (read back with soundfile)."""
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.headers["Content-Type"] == "audio/wav"
        data = r.read()
    return data, sf.info(io.BytesIO(data)).frames


def check_audio_element(driver) -> None:
    """The spoken reply's <audio>: a wav with a RIFF header and a non-empty data chunk, which the browser loads."""
    player = by_id(driver, "reply-audio")
    assert player.is_displayed()
    data, frames = read_wav(player.get_attribute("src"))
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and frames > 0
    data_at = data.find(b"data")
    assert data_at > 0 and int.from_bytes(data[data_at + 4 : data_at + 8], "little") > 0
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "const a = document.getElementById('reply-audio'); return a.readyState >= 1 && a.duration > 0;"))


def clip(trained_models) -> dict:
    """The held-out clip as the page uploads it."""
    return {"name": trained_models["test_wav"].name,
            "data": base64.b64encode(trained_models["test_wav"].read_bytes()).decode()}


# ---------------------------------------------------------------------------------------------- the modes
def test_the_start_command_prints_the_address_and_the_modes(demos, browser, capsys):
    for name, demo in demos.items():
        assert demo["url"].startswith("http://127.0.0.1:"), demo["printed"]
        with capsys.disabled():
            print(f"\n{name} model: {demo['printed'].strip().splitlines()[-1]}")
    assert "S2S chat: available" in demos["dialogue"]["printed"]
    assert "S2S chat: unavailable (this model's speech head was never trained" in demos["understanding"]["printed"]
    open_page(browser, demos["dialogue"]["url"])
    assert all(by_id(browser, f"mode-{m}").is_enabled() for m in ("understand", "s2t", "s2s", "tts"))
    assert "web_dialogue" in text(browser, "model-info")
    open_page(browser, demos["understanding"]["url"])  # an understanding checkpoint: no speech out, and why
    assert by_id(browser, "mode-understand").is_enabled() and by_id(browser, "mode-s2t").is_enabled()
    for mode in ("s2s", "tts"):
        assert not by_id(browser, f"mode-{mode}").is_enabled()
        assert text(browser, f"reason-{mode}").startswith("unavailable: this model's speech head was never trained")


def test_understanding_shows_transcript_and_tags(demos, browser, services, trained_models, shots, tmp_path):
    open_page(browser, demos["understanding"]["url"])
    upload(browser, trained_models["test_wav"])
    choose(browser, "understand")
    task = by_id(browser, "task")
    task.clear()
    task.send_keys("<TRANSCRIBE> <GENDER>")
    run(browser)
    want = services["understanding"].run({"mode": "understand", "task": "<TRANSCRIBE> <GENDER>",
                                          "audio": clip(trained_models)})
    assert not by_id(browser, "error").is_displayed()
    assert text(browser, "answer") == shown(want["answer"])
    assert text(browser, "transcript") == shown(want["transcript"])
    chips = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#tags .tag")]
    assert chips == want["tags"] and chips and all(re.fullmatch(r"<[^<>]+>", c) for c in chips), "a tag is shown"
    assert f"gender: {want['fields']['gender']}" in text(browser, "fields") and want["fields"]["gender"]
    assert text(browser, "result-input").startswith(f"input: {trained_models['test_wav'].name} · ")
    assert "16000 Hz" in text(browser, "result-input") and "resampled" not in text(browser, "result-input")
    browser.save_screenshot(str(shots / "understanding.png"))

    other_rate = tmp_path / "at_44k.wav"  # the same clip at 44.1 kHz: resampled, the original rate shown
    audio, rate = sf.read(trained_models["test_wav"], dtype="float32")
    sf.write(other_rate, resample(audio, rate, 44100), 44100)
    upload(browser, other_rate)
    run(browser)
    assert "44100 Hz, resampled to 16000 Hz" in text(browser, "result-input")
    assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#tags .tag")], "still a tag"


def test_s2t_chat_shows_think_and_reply(demos, browser, services, trained_models, shots):
    open_page(browser, demos["dialogue"]["url"])
    upload(browser, trained_models["test_wav"])
    choose(browser, "s2t")
    assert by_id(browser, "think").is_selected()
    run(browser)
    service = services["dialogue"]
    want = service.run({"mode": "s2t", "audio": clip(trained_models), "conversation": service.new_conversation()})
    assert want["think"] is not None, "the first turn of a think chat has a think section"
    assert text(browser, "think-text") == shown(want["think"]) and by_id(browser, "think-row").is_displayed()
    assert text(browser, "reply") == shown(want["reply"]) and want["reply"]
    assert text(browser, "turn-info").startswith("turn 1 · 0 earlier turns in context · s2t_chat_think")
    assert not by_id(browser, "reply-audio").is_displayed(), "S2T speaks no reply"
    browser.save_screenshot(str(shots / "s2t.png"))


def test_s2s_chat_speaks_keeps_history_and_starts_anew(demos, browser, services, trained_models, shots):
    open_page(browser, demos["dialogue"]["url"])
    upload(browser, trained_models["test_wav"])
    choose(browser, "s2s")
    service = services["dialogue"]
    cid = service.new_conversation()
    want = [service.run({"mode": "s2s", "audio": clip(trained_models), "conversation": cid}) for _ in range(2)]
    run(browser)
    assert text(browser, "reply") == shown(want[0]["reply"])
    assert want[0]["codes"] > 0 and f"spoken: {want[0]['codes']} speech codes" in text(browser, "audio-note")
    check_audio_element(browser)
    run(browser)  # the second turn: the first one is kept
    assert text(browser, "turn-info").startswith("turn 2 · 1 earlier turn in context · speech2text_token_history")
    assert text(browser, "reply") == shown(want[1]["reply"])
    turns = browser.find_elements(By.CSS_SELECTOR, "#conversation li.turn")
    assert len(turns) == 2 and all(trained_models["test_wav"].name in t.text for t in turns)
    browser.save_screenshot(str(shots / "s2s.png"))
    by_id(browser, "new-conversation").click()
    WebDriverWait(browser, 20).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#conversation li.turn"))
    assert not by_id(browser, "conversation-box").is_displayed()
    run(browser)
    assert text(browser, "turn-info").startswith("turn 1 · 0 earlier turns in context · speech2text_token_think")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#conversation li.turn")) == 1


def test_tts_speaks_the_text(demos, browser, services, shots):
    open_page(browser, demos["dialogue"]["url"])
    choose(browser, "tts")
    by_id(browser, "tts-text").send_keys("turn on the kitchen light")
    run(browser)
    want = services["dialogue"].run({"mode": "tts", "text": "turn on the kitchen light"})
    assert want["codes"] > 0 and text(browser, "result-input") == "text: turn on the kitchen light"
    assert f"spoken: {want['codes']} speech codes, {want['seconds']} s" in text(browser, "audio-note")
    check_audio_element(browser)
    data, _ = read_wav(by_id(browser, "reply-audio").get_attribute("src"))
    assert data == want["wav"], "the page plays the service's wav"
    browser.save_screenshot(str(shots / "tts.png"))


def test_a_file_that_is_not_audio_shows_the_error(demos, browser, shots, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a recording\n" * 10)
    open_page(browser, demos["understanding"]["url"])
    upload(browser, notes)
    choose(browser, "understand")
    run(browser)
    error = by_id(browser, "error")
    assert error.is_displayed() and error.text == "notes.txt is not an audio file this demo can read (WAV, FLAC or OGG)"
    assert "Traceback" not in browser.page_source and not by_id(browser, "result").is_displayed()
    browser.save_screenshot(str(shots / "error.png"))
    by_id(browser, "record").click()  # the page still works after an error: a recording from the fake microphone
    WebDriverWait(browser, 20).until(lambda d: text(d, "record-note") == "recording…")
    time.sleep(1.5)
    by_id(browser, "record").click()
    WebDriverWait(browser, 20).until(lambda d: text(d, "audio-name").startswith("recording.wav"))
    run(browser)
    assert not by_id(browser, "error").is_displayed(), text(browser, "error")
    assert text(browser, "result-input").startswith("input: recording.wav · ")


def test_screenshots_were_saved(shots, capsys):
    names = sorted(p.name for p in shots.glob("*.png"))
    with capsys.disabled():
        print(f"\nweb demo screenshots in {shots}: {', '.join(names)}")
    want = ["error.png", "s2s.png", "s2t.png", "tts.png", "understanding.png"]
    assert set(want) <= set(names) and all((shots / n).stat().st_size > 1000 for n in want)
