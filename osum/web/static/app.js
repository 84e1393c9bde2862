// The osum demo page: audio in (upload or recording), a mode, the server's answer shown as text and audio.
// Everything the server says is put into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  audio: null,          // {name, bytes: ArrayBuffer}
  conversation: null,   // the server's id of this page's conversation
  turns: {s2t: [], s2s: []},
  recorder: null,
};

// ---------------------------------------------------------------- the server
async function api(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
  } catch (e) {
    return {ok: false, error: "cannot reach the demo server (" + e.message + ")"};
  }
  try {
    return await response.json();
  } catch (e) {
    return {ok: false, error: "the server answered HTTP " + response.status + " without a message"};
  }
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

// ---------------------------------------------------------------- modes
function currentMode() {
  const checked = document.querySelector("input[name=mode]:checked");
  return checked ? checked.value : null;
}

function showPanels() {
  const mode = currentMode();
  document.querySelectorAll(".panel").forEach((panel) => {
    panel.hidden = !panel.dataset.modes.split(" ").includes(mode);
  });
  renderConversation();
}

function buildModes(info) {
  const box = $("modes");
  box.textContent = "";
  let first = null;
  for (const mode of info.modes) {
    const wrap = document.createElement("div");
    wrap.className = "mode" + (mode.available ? "" : " unavailable");
    wrap.id = "mode-box-" + mode.id;
    const label = document.createElement("label");
    const radio = document.createElement("input");
    Object.assign(radio, {type: "radio", name: "mode", value: mode.id, id: "mode-" + mode.id,
                          disabled: !mode.available});
    radio.addEventListener("change", showPanels);
    label.append(radio, " " + mode.label);
    wrap.append(label);
    if (!mode.available) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.id = "reason-" + mode.id;
      reason.textContent = "unavailable: " + mode.reason;
      wrap.append(reason);
    } else if (first === null) {
      first = radio;
    }
    box.append(wrap);
  }
  if (first) first.checked = true;
  const list = $("task-list");
  for (const task of info.tasks) {
    const option = document.createElement("option");
    option.value = task;
    list.append(option);
  }
  $("think-note").textContent = info.think_note || "think form: " + info.think;
  const parts = ["model: " + info.checkpoint];
  if (info.flow) parts.push("token2wav: " + info.flow);
  parts.push("audio up to " + info.max_seconds + " s",
             info.history_note || "chat keeps " + info.history + " earlier turns");
  $("model-info").textContent = parts.join(" · ");
  showPanels();
}

// ---------------------------------------------------------------- audio in
function useAudio(name, bytes, blob) {
  state.audio = {name: name, bytes: bytes};
  $("audio-name").textContent = name + " (" + (bytes.byteLength / 1024).toFixed(1) + " KB)";
  const player = $("input-audio");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
}

async function onFile() {
  const file = $("audio-file").files[0];
  if (!file) return;
  useAudio(file.name, await file.arrayBuffer(), file);
}

function wavFile(chunks, rate) {
  const n = chunks.reduce((sum, c) => sum + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) {
      const x = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, x < 0 ? x * 0x8000 : x * 0x7fff, true);
    }
  }
  return view.buffer;
}

async function toggleRecording() {
  const button = $("record");
  if (state.recorder) {
    const rec = state.recorder;
    state.recorder = null;
    rec.node.disconnect();
    rec.source.disconnect();
    rec.stream.getTracks().forEach((t) => t.stop());
    await rec.context.close();
    button.textContent = "Record";
    button.classList.remove("recording");
    const seconds = rec.chunks.reduce((s, c) => s + c.length, 0) / rec.rate;
    $("record-note").textContent = "recorded " + seconds.toFixed(1) + " s at " + rec.rate + " Hz";
    const wav = wavFile(rec.chunks, rec.rate);
    useAudio("recording.wav", wav, new Blob([wav], {type: "audio/wav"}));
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const context = new AudioContext();
    await context.audioWorklet.addModule("/static/recorder-worklet.js");
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "pcm-capture");
    const rec = {stream, context, source, node, chunks: [], rate: context.sampleRate};
    node.port.onmessage = (event) => rec.chunks.push(event.data);
    source.connect(node);
    state.recorder = rec;
    button.textContent = "Stop";
    button.classList.add("recording");
    $("record-note").textContent = "recording…";
  } catch (e) {
    $("record-note").textContent = "cannot record: " + e.message;
  }
}

function setUpRecording() {
  const ok = window.isSecureContext && navigator.mediaDevices && window.AudioWorkletNode;
  if (!ok) {
    $("record").disabled = true;
    $("record-note").textContent = "recording needs the page at localhost or https (e.g. ssh -L 7860:localhost:7860)";
  }
}

// ---------------------------------------------------------------- results
function show(id, value) {
  const row = $(id + "-row");
  const empty = value === null || value === undefined;
  row.hidden = empty;
  return !empty;
}

function setText(id, value) {
  if (show(id, value)) $(id === "think" ? "think-text" : id).textContent = value === "" ? "(empty)" : value;
}

function describeInput(input) {
  if (!input) return "";
  let text = "input: " + input.name + " · " + input.seconds + " s · " + input.rate + " Hz";
  if (input.resampled) text += ", resampled to 16000 Hz";
  if (input.channels > 1) text += " · " + input.channels + " channels, mixed down";
  return text;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function render(result) {
  $("error").hidden = true;
  $("result").hidden = false;
  $("result").dataset.mode = result.mode;
  $("result-input").textContent = result.mode === "tts" ? "text: " + result.text : describeInput(result.input);
  setText("transcript", result.mode === "understand" ? result.transcript : null);
  if (show("tags", result.mode === "understand" ? result.tags : null)) {
    const box = $("tags");
    box.textContent = "";
    if (!result.tags.length) box.textContent = "(none)";
    for (const tag of result.tags) {
      const chip = document.createElement("span");
      chip.className = "tag";
      chip.textContent = tag;
      box.append(chip);
    }
  }
  const fields = result.fields ? Object.entries(result.fields).filter(([, v]) => v !== null) : [];
  if (show("fields", fields.length ? fields : null)) {
    $("fields").textContent = fields.map(([k, v]) => k + ": " + (Array.isArray(v) ? JSON.stringify(v) : v)).join(" · ");
  }
  setText("answer", result.mode === "understand" ? result.answer : null);
  const chat = result.mode === "s2t" || result.mode === "s2s";
  setText("think", chat && result.think !== null ? result.think : null);
  setText("reply", chat ? result.reply : null);
  if (show("turn", chat ? result.turn : null)) {
    const kept = result.kept === 1 ? "1 earlier turn" : result.kept + " earlier turns";
    $("turn-info").textContent = "turn " + result.turn + " · " + kept + " in context · " + result.output_type;
  }
  const player = $("reply-audio");
  if (result.audio_url) {
    player.src = result.audio_url;
    player.hidden = false;
  } else {
    player.removeAttribute("src");
    player.hidden = true;
  }
  let note = "";
  if (result.audio_url) note = "spoken: " + result.codes + " speech codes, " + result.seconds + " s";
  else if (result.note) note = result.note;
  $("audio-note").textContent = note;
  if (chat) {
    state.turns[result.mode] = result.turns;
    renderConversation();
  }
}

function renderConversation() {
  const mode = currentMode();
  const turns = state.turns[mode] || [];
  $("conversation-box").hidden = !(mode === "s2t" || mode === "s2s") || !turns.length;
  const list = $("conversation");
  list.textContent = "";
  for (const turn of turns) {
    const item = document.createElement("li");
    item.className = "turn";
    const add = (who, text) => {
      const line = document.createElement("div");
      const label = document.createElement("span");
      label.className = "who";
      label.textContent = who;
      line.append(label, text);
      item.append(line);
    };
    add("you:", turn.user);
    if (turn.think !== null) add("think:", turn.think);
    add("reply:", turn.reply === "" ? "(empty)" : turn.reply);
    list.append(item);
  }
}

// ---------------------------------------------------------------- actions
async function run() {
  const mode = currentMode();
  if (!mode) return showError("no mode is available for this model");
  const request = {mode: mode};
  if (mode === "tts") {
    request.text = $("tts-text").value;
    request.seed = $("seed").value;
  } else {
    request.audio = state.audio ? {name: state.audio.name, data: base64(state.audio.bytes)} : null;
    if (mode === "understand") {
      request.task = $("task").value;
      request.prompt = $("prompt").value;
    } else {
      request.conversation = state.conversation;
      request.think = $("think").checked;
    }
  }
  document.body.dataset.busy = "true";
  $("run").disabled = true;
  $("status").textContent = "running…";
  const started = performance.now();
  const result = await api("/api/run", request);
  $("run").disabled = false;
  document.body.dataset.busy = "false";
  if (result.ok) {
    if (result.conversation) state.conversation = result.conversation;
    render(result);
    $("status").textContent = "done in " + ((performance.now() - started) / 1000).toFixed(1) + " s";
  } else {
    showError(result.error);
    $("status").textContent = "failed";
  }
  document.body.dataset.runs = String(Number(document.body.dataset.runs) + 1);
}

async function newConversation() {
  const result = await api("/api/new", {conversation: state.conversation});
  if (!result.ok) return showError(result.error);
  state.conversation = result.conversation;
  state.turns = {s2t: [], s2s: []};
  $("result").hidden = true;
  $("error").hidden = true;
  renderConversation();
  $("status").textContent = "new conversation";
}

async function start() {
  $("audio-file").addEventListener("change", onFile);
  $("record").addEventListener("click", toggleRecording);
  $("run").addEventListener("click", run);
  $("new-conversation").addEventListener("click", newConversation);
  setUpRecording();
  const info = await api("/api/info");
  if (!info.ok) return showError(info.error);
  state.info = info;
  buildModes(info);
  const fresh = await api("/api/new", {});
  if (fresh.ok) state.conversation = fresh.conversation;
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
