"""`python -m osum.web`: talk to a trained model in the browser.

    python -m osum.web --ckpt CKPT_OR_EXPORT [--flow F [--vocoder V]] [--reference r.wav] [--port 7860]

A local page to upload or record audio and run each mode the loaded model can do: understanding (a task tag
string such as ``<TRANSCRIBE> <GENDER>``, or a free prompt: the transcript and tags), S2T chat and S2S chat over a
conversation (the think section, the reply, the spoken reply; "new conversation" forgets the history) and TTS
from text. Modes the model cannot do are shown disabled with the reason (no trained speech head: no S2S or TTS;
no ``--flow``: no spoken output).

Why a small page of our own and not Gradio, the field's usual choice: the demo must run where our users train,
on clusters without internet access, and Gradio brings a large dependency tree (a web framework, an ASGI
server, front-end assets, a version that moves fast) for four forms. Here the server is the standard library's
``http.server`` (``server.py``: HTTP and routing), the model calls are one module (``service.py``), and the page
is one HTML file with plain JavaScript and CSS served from the package (``static/``): nothing is fetched from the
network, and the page's behaviour is ours to test, which ``tests/web`` does in a real headless Chromium.
Recording captures PCM with the Web Audio API and encodes a WAV in the page (MediaRecorder's WebM would need a
codec the server does not have); the server decodes WAV, FLAC or OGG and resamples to 16 kHz.
"""
