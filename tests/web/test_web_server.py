"""`osum.web.server` over real HTTP (a server thread on a free port, a random-weight model): the page and its
files, the JSON API, spoken replies as wav files, and errors as one line of JSON, never a traceback."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from osum.web.server import DemoServer
from osum.web.service import DemoService


@pytest.fixture(scope="module")
def server(random_models):
    service = DemoService.load(str(random_models["speech"]), str(random_models["flow"]), max_seconds=5.0,
                               max_new_tokens=8, max_reply_tokens=12, max_codes=20)
    srv = DemoServer(service, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(srv, path: str, body: object | bytes | None = None) -> tuple[int, dict | bytes, str]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, raw, kind = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, raw, kind = e.code, e.read(), e.headers.get("Content-Type", "")
    return status, (json.loads(raw) if kind.startswith("application/json") else raw), kind


def wav_upload(name: str, seconds: float = 0.6, rate: int = 16000) -> dict:
    out = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(out, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate, format="WAV")
    return {"name": name, "data": base64.b64encode(out.getvalue()).decode()}


def test_page_and_static_files_come_from_the_package(server):
    status, page, kind = call(server, "/")
    assert status == 200 and kind.startswith("text/html") and b'src="/static/app.js"' in page
    assert b"http://" not in page and b"https://" not in page, "nothing from the network"
    for name, kind_start in (("app.js", "text/javascript"), ("style.css", "text/css"),
                             ("recorder-worklet.js", "text/javascript")):
        status, body, kind = call(server, f"/static/{name}")
        assert status == 200 and kind.startswith(kind_start) and body
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/missing.js", "/nothing"):
        status, body, _ = call(server, path)
        assert status == 404 and body["ok"] is False


def test_info_lists_modes_and_tasks(server):
    status, info, _ = call(server, "/api/info")
    assert status == 200 and info["ok"] and [m["id"] for m in info["modes"]] == ["understand", "s2t", "s2s", "tts"]
    assert "<TRANSCRIBE> <GENDER>" in info["tasks"] and info["max_seconds"] == 5.0


def test_bad_input_is_one_line_of_json_naming_the_file(server):
    notes = {"name": "notes.txt", "data": base64.b64encode(b"not audio at all\n" * 40).decode()}
    status, body, _ = call(server, "/api/run", {"mode": "understand", "task": "<TRANSCRIBE>", "audio": notes})
    assert status == 400 and body == {"ok": False, "error": "notes.txt is not an audio file this demo can read "
                                                            "(WAV, FLAC or OGG)"}
    status, body, _ = call(server, "/api/run", b"{not json")
    assert status == 400 and body["error"] == "the request body is not JSON"
    status, body, _ = call(server, "/api/run", {"mode": "s2t", "audio": wav_upload("long.wav", seconds=6)})
    assert status == 400 and "long.wav is 6.0 s long" in body["error"]
    status, body, _ = call(server, "/api/nothing", {})
    assert status == 404 and "no such API" in body["error"]


def test_a_server_fault_is_logged_and_the_page_gets_one_line(server, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the model fell over\nsecond line of detail")

    monkeypatch.setattr(server.service, "understand", broken)
    with caplog.at_level(logging.ERROR, logger="osum.web"):
        status, body, _ = call(server, "/api/run", {"mode": "understand", "task": "<TRANSCRIBE>",
                                                    "audio": wav_upload("a.wav")})
    assert status == 500 and body["ok"] is False
    assert body["error"] == ("internal error (RuntimeError: the model fell over second line of detail); "
                             "the server log has the details")
    assert "Traceback" not in json.dumps(body)
    assert any(r.exc_info and "Traceback" not in r.getMessage() for r in caplog.records), "traceback to the log"


def test_understanding_resamples_and_reports_the_rate(server):
    status, body, _ = call(server, "/api/run", {"mode": "understand", "task": "<GENDER>",
                                                "audio": wav_upload("a.wav", rate=44100)})
    assert status == 200 and body["ok"] and body["input"]["rate"] == 44100 and body["input"]["resampled"]
    assert isinstance(body["answer"], str) and body["tags"] == [t for t in body["tags"] if t.startswith("<")]


def test_spoken_replies_are_served_as_wav(server):
    status, new, _ = call(server, "/api/new", {})
    assert status == 200 and new["conversation"]
    found = 0
    for mode, extra in (("tts", {"text": "turn on the light"}),
                        ("s2s", {"audio": wav_upload("t.wav"), "conversation": new["conversation"]})):
        status, body, _ = call(server, "/api/run", {"mode": mode, **extra})
        assert status == 200 and body["ok"] and "wav" not in body
        if body.get("audio_url"):  # random weights may give no codes: then a note says so
            status, wav, kind = call(server, body["audio_url"])
            assert status == 200 and kind == "audio/wav" and wav[:4] == b"RIFF" and len(wav) == body["audio_bytes"]
            found += 1
        else:
            assert body["note"] == "the model generated no speech codes"
    status, body, _ = call(server, "/audio/0123456789abcdef.wav")
    assert status == 404 and "no longer kept" in body["error"]


def test_cli_names_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "osum.web", "--ckpt", str(tmp_path / "none.ckpt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "error:" in proc.stderr and "none.ckpt is neither a checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
