// vtuberd's avatar page. Speaks the Open-LLM-VTuber protocol over /client-ws (see the
// daemon's docs), plays the character's speech with lip sync, and shows the conversation.
// Plain ES modules, no build step; everything is served by the daemon itself.

import { Connection } from './connection.js';
import { Player, MOUTH_HISTORY_MAX } from './player.js';
import { Mic } from './mic.js';
import { createLive2DAvatar, modelKind } from './live2d.js';
import { createFallbackAvatar } from './avatar-fallback.js';

const CHAT_MAX = 500;
const SUBTITLES_SEEN_MAX = 200;
const ECHO_WINDOW_MS = 10_000;

const $ = (id) => document.getElementById(id);
const el = {
  connDot: $('conn-dot'),
  connText: $('conn-text'),
  stateText: $('state-text'),
  characterSelect: $('character-select'),
  historyButton: $('history-button'),
  muteButton: $('mute-button'),
  chatToggle: $('chat-toggle'),
  stage: $('stage'),
  stageMessage: $('stage-message'),
  notice: $('notice'),
  noticeDetail: $('notice-detail'),
  noticeTitle: $('notice-title'),
  noticeHelp: $('notice-help'),
  noticeClose: $('notice-close'),
  soundHint: $('sound-hint'),
  soundEnable: $('sound-enable'),
  subtitle: $('subtitle'),
  chatPanel: $('chat-panel'),
  chatLog: $('chat-log'),
  micButton: $('mic-button'),
  micLevel: $('mic-level'),
  form: $('input-form'),
  textInput: $('text-input'),
  stopButton: $('stop-button'),
  approvalDialog: $('approval-dialog'),
  approvalTool: $('approval-tool'),
  approvalServer: $('approval-server'),
  approvalDescription: $('approval-description'),
  approvalArguments: $('approval-arguments'),
  approvalCountdown: $('approval-countdown'),
  approvalMore: $('approval-more'),
  historyDialog: $('history-dialog'),
  historyList: $('history-list'),
  historyNew: $('history-new'),
  historyClose: $('history-close'),
};

// ---------------------------------------------------------------- test hooks (read-only)

const hooks = {
  connected: false,
  live2d: false,
  avatarKind: null, // "live2d" | "fallback" | null while loading
  avatarReady: false,
  live2dRuntime: null, // "cubism2" | "cubism4" while a Live2D model shows
  avatarUrl: null,
  avatarError: null, // why the character's model could not be shown (also in the notice)
  avatarLoadMs: null, // from set-model-and-conf to the model on the stage
  fps: null, // the avatar's frame rate, updated each second
  mouthParameter: null,
  mocVersion: null,
  coreVersion: null,
  expression: null, // the model's current expression name, once one was set
  expressionsSet: 0,
  mouthHistory: [],
  audioPlayed: 0,
  subtitles: '',
  subtitlesSeen: [],
  chatLog: [],
  lastError: null,
  state: 'idle',
  muted: false,
  character: null,
  turnsStarted: 0,
  turnsEnded: 0,
  turnActive: false,
  playbackCompleteSent: 0,
  interruptsSent: 0,
  micActive: false,
  micUtterances: 0,
  micChunksSent: 0,
  version: null,
  authorized: null, // false: the daemon wants its access token and has none from us
};
window.__vtuber = new Proxy(hooks, {
  get(target, key) {
    const v = target[key];
    if (Array.isArray(v)) return v.map((x) => (x && typeof x === 'object' ? { ...x } : x));
    return v;
  },
  set() { return false; },
  defineProperty() { return false; },
  deleteProperty() { return false; },
});

// ---------------------------------------------------------------- small helpers

// The access token comes in the address: `?token=` (what `vtuber web url` prints) or
// `#token=`. The daemon swaps `?token=` for an HttpOnly, SameSite=Strict cookie and sends
// the browser on to the clean address, so this script never holds the token and the
// WebSocket presents the cookie by itself. A `#token=` never reaches a server, so it is
// handed over the same way. Returns true when the page is leaving for that.
function handOverToken() {
  try { sessionStorage.removeItem('vtuber-token'); } catch { /* storage disabled */ }
  const hash = new URLSearchParams(location.hash.replace(/^#/, ''));
  const query = new URLSearchParams(location.search);
  const token = hash.get('token');
  if (token) {
    hash.delete('token');
    query.set('token', token);
    const rest = hash.toString();
    location.replace(`${location.pathname}?${query}${rest ? `#${rest}` : ''}`);
    return true;
  }
  if (query.has('token')) {
    // Left here only when the daemon needs no token (web.auth: none): drop it anyway.
    query.delete('token');
    const q = query.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
  }
  return false;
}

function pref(key, fallback) {
  try {
    const v = localStorage.getItem(`vtuber-${key}`);
    return v === null ? fallback : v === '1';
  } catch {
    return fallback;
  }
}

function setPref(key, on) {
  try { localStorage.setItem(`vtuber-${key}`, on ? '1' : '0'); } catch { /* storage disabled */ }
}

function pushBounded(list, value, max) {
  list.push(value);
  if (list.length > max) list.splice(0, list.length - max);
}

function shorten(text, max) {
  const s = String(text ?? '');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function joinSentence(prev, next) {
  if (!prev) return next;
  if (!next) return prev;
  if (/\s$/.test(prev) || /^\s/.test(next)) return prev + next;
  // No space between CJK sentences.
  if (/[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]$/.test(prev)) return prev + next;
  return `${prev} ${next}`;
}

// ---------------------------------------------------------------- chat log

const chatItems = []; // {entry: {role, text}, li, body}

function scrollChat() {
  const log = el.chatLog;
  log.scrollTop = log.scrollHeight;
}

function addChat(role, text, { name, cls } = {}) {
  const entry = { role, text: String(text ?? '') };
  if (name) entry.name = name;
  const li = document.createElement('li');
  li.className = `msg ${role}${cls ? ` ${cls}` : ''}`;
  if (name) {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = name;
    li.append(who);
  }
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = entry.text;
  li.append(body);
  el.chatLog.append(li);
  const item = { entry, li, body };
  chatItems.push(item);
  hooks.chatLog.push(entry);
  while (chatItems.length > CHAT_MAX) {
    chatItems.shift().li.remove();
    hooks.chatLog.shift();
  }
  scrollChat();
  return item;
}

function updateChat(item, text, cls) {
  item.entry.text = text;
  item.body.textContent = text;
  if (cls !== undefined) item.li.className = `msg ${item.entry.role}${cls ? ` ${cls}` : ''}`;
  scrollChat();
}

function clearChat() {
  chatItems.length = 0;
  hooks.chatLog.length = 0;
  el.chatLog.replaceChildren();
}

function showError(message) {
  const text = shorten(message || 'unknown error', 2000);
  hooks.lastError = text;
  addChat('error', text);
}

// ---------------------------------------------------------------- subtitles and status

function setSubtitle(text) {
  el.subtitle.classList.remove('status');
  el.subtitle.textContent = text;
  hooks.subtitles = text;
  if (text) pushBounded(hooks.subtitlesSeen, text, SUBTITLES_SEEN_MAX);
}

function setStatusLine(text) {
  // `full-text` messages ("Thinking...", "Connection established"): a status, not speech.
  if (player.current) return;
  el.subtitle.classList.add('status');
  el.subtitle.textContent = text;
}

const STATE_LABELS = {
  idle: '', listening: 'listening', hearing: 'hearing you', thinking: 'thinking',
  speaking: 'speaking', loading: 'loading', error: 'error',
};

function setState(state) {
  hooks.state = state;
  el.stateText.textContent = STATE_LABELS[state] ?? String(state);
}

function setConnStatus(status, detail) {
  el.connDot.classList.toggle('up', status === 'open');
  el.connDot.classList.toggle('down', status === 'closed');
  if (status === 'open') el.connText.textContent = 'Connected';
  else if (status === 'connecting') el.connText.textContent = 'Connecting…';
  else el.connText.textContent = `Disconnected: ${detail || ''}`;
}

function stageMessage(text) {
  el.stageMessage.textContent = text;
}

// ---------------------------------------------------------------- avatar

let avatar = null;
let avatarSeq = 0;
// Whether each Live2D runtime is installed, from /api/page-config: "yes" | "no" | "unknown".
const runtimes = { cubism2: 'unknown', cubism4: 'unknown' };
let coreUrl = null; // web.live2d_core_url
let modelInfo = null;

function onMouthApplied(v) {
  if (player.current) pushBounded(hooks.mouthHistory, Math.round(v * 1000) / 1000, MOUTH_HISTORY_MAX);
}

function replaceAvatar(next) {
  if (avatar && avatar !== next) avatar.destroy();
  avatar = next;
  hooks.avatarKind = next.kind;
  hooks.live2d = next.kind === 'live2d';
  hooks.live2dRuntime = next.runtime || null;
  hooks.avatarUrl = next.url || null;
  hooks.mouthParameter = next.mouthParameter || null;
  hooks.mocVersion = next.mocVersion ?? null;
  hooks.coreVersion = next.coreVersion ?? null;
  hooks.expression = null;
  hooks.avatarReady = true;
  stageMessage('');
}

setInterval(() => {
  hooks.fps = avatar && avatar.fps ? avatar.fps() : null;
}, 1000);

const NOTICE_MISSING = 'Live2D avatar not installed.';

/** The notice over the stage: `title`, then what to do (only for a missing runtime). */
function showNotice(detail, title = NOTICE_MISSING) {
  el.noticeTitle.textContent = title;
  el.noticeHelp.hidden = title !== NOTICE_MISSING;
  el.noticeDetail.textContent = detail ? (title === NOTICE_MISSING ? `(${shorten(detail, 300)})` : shorten(detail, 600)) : '';
  el.notice.hidden = false;
}

/**
 * A model that cannot be shown: said in the page (never an empty stage: the built-in
 * avatar stands in) and told to the daemon, which shows it in `vtuber status`.
 */
function reportAvatarError(info, err) {
  const message = err && err.message ? err.message : String(err);
  hooks.avatarError = message;
  const missing = !err || err.name !== 'AvatarLoadError';
  showNotice(message, missing ? NOTICE_MISSING : 'This Live2D model cannot be shown.');
  conn.send({ type: 'avatar-status', model_url: (info && info.url) || '', error: message });
}

function useFallback(info) {
  if (avatar && avatar.kind === 'fallback') return;
  replaceAvatar(createFallbackAvatar(el.stage, { onMouthApplied, name: info && info.name }));
}

async function showAvatar(info) {
  const seq = ++avatarSeq;
  if (!info || typeof info.url !== 'string' || !info.url) {
    useFallback(info);
    return;
  }
  const kind = modelKind(info.url);
  if (runtimes[kind] === 'no') {
    showNotice(kind === 'cubism4'
      ? 'The Cubism 3/4 runtime (Cubism Core and the plugin\'s Cubism 4 build) is not installed.'
      : '');
    useFallback(info);
    return;
  }
  if (avatar && avatar.kind === 'live2d' && avatar.url === info.url) {
    avatar.setModelInfo(info);
    return;
  }
  if (!avatar) stageMessage('Loading the avatar…');
  const t0 = performance.now();
  try {
    const next = await createLive2DAvatar(el.stage, info, { onMouthApplied, coreUrl });
    if (seq !== avatarSeq) { next.destroy(); return; }
    replaceAvatar(next);
    hooks.avatarLoadMs = Math.round(performance.now() - t0);
    hooks.avatarError = null;
    // Clears a problem `vtuber status` shows (maybe another page's, or an older model's).
    conn.send({ type: 'avatar-status', model_url: info.url, error: null });
    el.notice.hidden = true;
  } catch (err) {
    if (seq !== avatarSeq) return;
    console.warn('vtuber: Live2D failed, using the built-in avatar:', err);
    reportAvatarError(info, err);
    useFallback(info);
  }
}

/** Puts an emotionMap value on the face and notes which expression it became. */
function applyExpression(id) {
  if (!avatar) return;
  const target = avatar;
  Promise.resolve(target.setExpression(id, emotionWord(id))).then(() => {
    if (avatar !== target) return;
    hooks.expressionsSet += 1;
    hooks.expression = target.expressionName ? target.expressionName() : null;
  });
}

function emotionWord(id) {
  const map = (modelInfo && modelInfo.emotionMap) || {};
  for (const [word, value] of Object.entries(map)) if (value === id) return word;
  return typeof id === 'string' ? id : null;
}

// ---------------------------------------------------------------- playback and turns

let turn = null; // the server's current conversation chain
let lastTurn = null;

function newTurn() {
  return { synthDone: false, completeSent: false, interrupted: false, heard: [], aiItem: null, name: null };
}

function ensureTurn() {
  if (!turn) {
    turn = newTurn();
    hooks.turnActive = true;
  }
  lastTurn = turn;
  return turn;
}

function sendPlaybackComplete(t) {
  if (t.completeSent || t.interrupted) return;
  t.completeSent = true;
  if (conn.send({ type: 'frontend-playback-complete' })) hooks.playbackCompleteSent += 1;
}

function appendAi(t, text, name) {
  const last = chatItems[chatItems.length - 1];
  if (t.aiItem && last === t.aiItem) {
    updateChat(t.aiItem, joinSentence(t.aiItem.entry.text, text));
  } else {
    t.aiItem = addChat('ai', text, { name: name || (modelInfo && modelInfo.name) || 'Character' });
  }
}

const player = new Player({
  onItemStart(item) {
    if (item.text) {
      setSubtitle(item.text);
      item.turn.heard.push(item.text);
      appendAi(item.turn, item.text, item.name);
      if (!item.forwarded && item.displayText) conn.send({ type: 'audio-play-start', display_text: item.displayText });
    }
    const expr = item.actions && Array.isArray(item.actions.expressions) ? item.actions.expressions[0] : undefined;
    if (typeof expr === 'number' || typeof expr === 'string') applyExpression(expr);
    updateStopButton();
  },
  onItemEnd(item, completed) {
    if (completed && typeof item.audio === 'string' && item.audio) hooks.audioPlayed += 1;
    updateStopButton();
  },
  onMouth(v) {
    if (avatar) avatar.setMouth(v);
  },
  onSoundBlocked() {
    el.soundHint.hidden = false;
  },
});

function turnBusy() {
  return (turn !== null && !turn.interrupted) || player.busy;
}

function updateStopButton() {
  el.stopButton.hidden = !turnBusy();
}

/** Barge-in: stop speaking now and tell the server what was heard of the reply. */
function interrupt() {
  if (!turnBusy()) return false;
  const t = turn || lastTurn;
  player.stopAll();
  if (avatar) avatar.setMouth(0);
  const heard = t ? t.heard.join(' ') : '';
  if (conn.send({ type: 'interrupt-signal', text: heard })) hooks.interruptsSent += 1;
  if (t) {
    t.interrupted = true;
    if (t.aiItem) updateChat(t.aiItem, t.aiItem.entry.text, 'interrupted');
  }
  updateStopButton();
  return true;
}

// ---------------------------------------------------------------- approvals

const approvalQueue = [];
const approvalTools = new Map();
let approvalShown = null;
let approvalTimer = 0;

function onApprovalRequest(msg) {
  const req = {
    id: msg.request_id,
    tool: String(msg.tool ?? ''),
    server: String(msg.server ?? ''),
    description: String(msg.description ?? ''),
    args: msg.arguments,
    deadline: performance.now() + Math.max(1, Number(msg.timeout_secs) || 60) * 1000,
  };
  approvalTools.set(req.id, req.tool);
  addChat('tool', `Approval needed: ${req.tool} (${req.server})`);
  approvalQueue.push(req);
  showNextApproval();
}

function showNextApproval() {
  if (approvalShown || approvalQueue.length === 0) return;
  approvalShown = approvalQueue.shift();
  const r = approvalShown;
  el.approvalTool.textContent = r.tool;
  el.approvalServer.textContent = r.server;
  el.approvalDescription.textContent = r.description;
  let args;
  try { args = JSON.stringify(r.args ?? {}, null, 2); } catch { args = String(r.args); }
  el.approvalArguments.textContent = args;
  el.approvalMore.textContent = approvalQueue.length ? ` · ${approvalQueue.length} more waiting` : '';
  for (const b of el.approvalDialog.querySelectorAll('button[data-decision]')) b.disabled = false;
  const tick = () => {
    const left = Math.max(0, Math.ceil((r.deadline - performance.now()) / 1000));
    el.approvalCountdown.textContent = String(left);
    if (left <= 0) closeApproval(); // the server denies it on its own timeout
  };
  tick();
  clearInterval(approvalTimer);
  approvalTimer = setInterval(tick, 250);
  if (!el.approvalDialog.open) {
    try { el.approvalDialog.showModal(); } catch { el.approvalDialog.show(); }
  }
  const first = el.approvalDialog.querySelector('button[data-decision="allow_once"]');
  if (first) first.focus();
}

function closeApproval() {
  clearInterval(approvalTimer);
  approvalShown = null;
  if (el.approvalDialog.open) el.approvalDialog.close();
  showNextApproval();
}

function answerApproval(decision) {
  const r = approvalShown;
  if (!r) return;
  conn.send({ type: 'approval-response', request_id: r.id, decision });
  closeApproval();
}

const RESOLUTION_WORDS = {
  approved: 'allowed', approved_for_session: 'allowed for this session', denied: 'denied',
  timed_out: 'denied (no answer in time)', cancelled: 'cancelled',
};

function onApprovalResolved(msg) {
  const id = msg.request_id;
  const tool = approvalTools.get(id) || 'tool call';
  approvalTools.delete(id);
  const i = approvalQueue.findIndex((r) => r.id === id);
  if (i >= 0) approvalQueue.splice(i, 1);
  if (approvalShown && approvalShown.id === id) closeApproval();
  else el.approvalMore.textContent = approvalQueue.length ? ` · ${approvalQueue.length} more waiting` : '';
  const res = String(msg.resolution ?? '');
  addChat('tool', `${tool}: ${RESOLUTION_WORDS[res] || res}`, { cls: res.startsWith('approved') ? 'completed' : 'error' });
}

function dropApprovals() {
  approvalQueue.length = 0;
  if (approvalShown) closeApproval();
}

// ---------------------------------------------------------------- history and characters

let currentHistory = null;
let configs = [];

function renderHistoryList(histories) {
  el.historyList.replaceChildren();
  if (!Array.isArray(histories) || histories.length === 0) {
    const li = document.createElement('li');
    li.textContent = 'No saved conversations yet.';
    el.historyList.append(li);
    return;
  }
  for (const h of histories) {
    if (!h || typeof h.uid !== 'string') continue;
    const li = document.createElement('li');
    if (h.uid === currentHistory) li.classList.add('current');
    const preview = document.createElement('span');
    preview.className = 'preview';
    const latest = h.latest_message && typeof h.latest_message.content === 'string' ? h.latest_message.content : '(empty)';
    preview.textContent = shorten(latest, 120);
    const when = document.createElement('span');
    when.className = 'when';
    const ts = h.timestamp || (h.latest_message && h.latest_message.timestamp);
    const d = ts ? new Date(ts) : null;
    when.textContent = d && !Number.isNaN(d.getTime()) ? d.toLocaleString() : h.uid;
    preview.append(when);
    const load = document.createElement('button');
    load.type = 'button';
    load.textContent = 'Open';
    load.setAttribute('aria-label', `Open conversation: ${shorten(latest, 60)}`);
    load.addEventListener('click', () => {
      currentHistory = h.uid;
      conn.send({ type: 'fetch-and-set-history', history_uid: h.uid });
      el.historyDialog.close();
    });
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Delete';
    del.className = 'danger';
    del.setAttribute('aria-label', `Delete conversation: ${shorten(latest, 60)}`);
    del.addEventListener('click', () => {
      if (window.confirm('Delete this conversation?')) conn.send({ type: 'delete-history', history_uid: h.uid });
    });
    li.append(preview, load, del);
    el.historyList.append(li);
  }
}

function showHistory(messages) {
  player.stopAll();
  clearChat();
  if (!Array.isArray(messages)) return;
  for (const m of messages) {
    if (!m || typeof m.content !== 'string') continue;
    if (m.role === 'human' || m.role === 'user') addChat('user', m.content);
    else if (m.role === 'ai' || m.role === 'assistant') addChat('ai', m.content, { name: m.name || (modelInfo && modelInfo.name) || 'Character' });
    else addChat('system', m.content);
  }
}

function renderConfigs() {
  const sel = el.characterSelect;
  sel.replaceChildren();
  const current = hooks.character;
  let matched = false;
  for (const c of configs) {
    if (!c || typeof c.filename !== 'string') continue;
    const opt = document.createElement('option');
    opt.value = c.filename;
    opt.textContent = c.name || c.filename;
    if (current && (c.name === current || c.filename === current || c.filename.replace(/\.[^.]+$/, '') === modelInfo?.confUid)) {
      opt.selected = true;
      matched = true;
    }
    sel.append(opt);
  }
  if (!matched) {
    const opt = document.createElement('option');
    opt.value = '';
    opt.textContent = current || 'Character…';
    opt.selected = true;
    sel.prepend(opt);
  }
  sel.disabled = configs.length === 0;
}

// ---------------------------------------------------------------- microphone

const mic = new Mic({
  onSpeechStart() {
    el.micButton.classList.add('hearing');
    if (turnBusy()) interrupt();
  },
  onChunk(samples) {
    const audio = new Array(samples.length);
    for (let i = 0; i < samples.length; i++) audio[i] = Math.round(samples[i] * 10000) / 10000;
    if (conn.send({ type: 'mic-audio-data', audio })) hooks.micChunksSent += 1;
  },
  onSpeechEnd() {
    el.micButton.classList.remove('hearing');
    if (conn.send({ type: 'mic-audio-end' })) hooks.micUtterances += 1;
  },
  onLevel(rms) {
    const bar = el.micLevel.firstElementChild;
    if (bar) bar.style.height = `${Math.min(100, Math.round(rms * 600))}%`;
  },
  echoActive: () => player.busy && !player.muted,
});

async function setMic(on) {
  if (on === mic.active) return;
  if (on) {
    el.micButton.disabled = true;
    try {
      player.unlock();
      await mic.start();
      setPref('mic', true);
    } catch (err) {
      showError(`Microphone: ${err && err.message ? err.message : err}`);
    } finally {
      el.micButton.disabled = false;
    }
  } else {
    mic.stop();
    setPref('mic', false);
    el.micButton.classList.remove('hearing');
  }
  hooks.micActive = mic.active;
  el.micButton.setAttribute('aria-pressed', String(mic.active));
  el.micLevel.hidden = !mic.active;
}

// ---------------------------------------------------------------- server messages

const pendingEcho = []; // texts this page sent, to skip the server's `user-input` echo

function handle(msg) {
  switch (msg.type) {
    case 'full-text':
      if (typeof msg.text === 'string') setStatusLine(msg.text);
      break;
    case 'set-model-and-conf': {
      const info = msg.model_info && typeof msg.model_info === 'object' ? msg.model_info : {};
      modelInfo = { ...info, confUid: msg.conf_uid };
      hooks.character = msg.conf_name || info.name || null;
      if (hooks.character) document.title = `${hooks.character} · vtuber`;
      renderConfigs();
      showAvatar(modelInfo);
      break;
    }
    case 'group-update':
      break;
    case 'control':
      onControl(msg.text);
      break;
    case 'state':
      if (typeof msg.state === 'string') setState(msg.state);
      break;
    case 'user-input-transcription':
      if (typeof msg.text === 'string' && msg.text) addChat('user', msg.text, { name: 'You (voice)' });
      break;
    case 'user-input': {
      if (typeof msg.text !== 'string' || !msg.text) break;
      const now = performance.now();
      while (pendingEcho.length && now - pendingEcho[0].at > ECHO_WINDOW_MS) pendingEcho.shift();
      const i = pendingEcho.findIndex((p) => p.text === msg.text);
      if (i >= 0) { pendingEcho.splice(i, 1); break; }
      addChat('user', msg.text, { name: msg.origin ? `You (${msg.origin})` : undefined });
      break;
    }
    case 'audio': {
      const t = ensureTurn();
      if (t.interrupted) break;
      const dt = msg.display_text && typeof msg.display_text === 'object' ? msg.display_text : {};
      player.enqueueSpeech({
        audio: typeof msg.audio === 'string' ? msg.audio : null,
        volumes: Array.isArray(msg.volumes) ? msg.volumes.map(Number) : [],
        sliceLength: Number(msg.slice_length) || 20,
        text: typeof dt.text === 'string' ? dt.text : '',
        name: typeof dt.name === 'string' ? dt.name : null,
        displayText: msg.display_text || null,
        actions: msg.actions && typeof msg.actions === 'object' ? msg.actions : null,
        forwarded: !!msg.forwarded,
        turn: t,
      });
      updateStopButton();
      break;
    }
    case 'backend-synth-complete': {
      const t = ensureTurn();
      if (t.interrupted || t.synthDone) break;
      t.synthDone = true;
      if (player.muted) sendPlaybackComplete(t);
      else player.enqueueMarker(() => sendPlaybackComplete(t));
      break;
    }
    case 'force-new-message': {
      const t = turn;
      if (t) player.enqueueMarker(() => { t.aiItem = null; });
      break;
    }
    case 'tool_call_status':
      onToolStatus(msg);
      break;
    case 'approval-request':
      onApprovalRequest(msg);
      break;
    case 'approval-resolved':
      onApprovalResolved(msg);
      break;
    case 'history-list':
      renderHistoryList(msg.histories);
      break;
    case 'history-data':
      showHistory(msg.messages);
      break;
    case 'new-history-created':
      if (typeof msg.history_uid === 'string') currentHistory = msg.history_uid;
      player.stopAll();
      clearChat();
      addChat('system', 'New conversation');
      break;
    case 'history-deleted':
      if (el.historyDialog.open) conn.send({ type: 'fetch-history-list' });
      if (msg.success === false) showError('Could not delete that conversation');
      break;
    case 'config-files':
      configs = Array.isArray(msg.configs) ? msg.configs : [];
      renderConfigs();
      break;
    case 'config-switched':
      if (typeof msg.message === 'string') addChat('system', msg.message);
      break;
    case 'background-files':
    case 'heartbeat-ack':
      break;
    case 'error':
      if (configs.length) el.characterSelect.disabled = false; // a failed switch-config
      showError(typeof msg.message === 'string' ? msg.message : JSON.stringify(msg.message));
      break;
    default:
      console.debug('vtuber: ignoring message type', msg.type);
  }
}

function onControl(text) {
  switch (text) {
    case 'start-mic':
      // The server allows the microphone; start it only if the user had it on before
      // (the browser asks for permission, which should follow a click the first time).
      if (pref('mic', false) && !mic.active) setMic(true);
      break;
    case 'interrupt':
      // Server-side VAD heard the user: stop speaking. The server cancels the turn itself.
      player.stopAll();
      if (turn) turn.interrupted = true;
      if (avatar) avatar.setMouth(0);
      updateStopButton();
      break;
    case 'conversation-chain-start':
      if (player.busy) player.stopAll();
      turn = newTurn();
      lastTurn = turn;
      hooks.turnsStarted += 1;
      hooks.turnActive = true;
      updateStopButton();
      break;
    case 'conversation-chain-end':
      if (turn && turn.aiItem && turn.interrupted) updateChat(turn.aiItem, turn.aiItem.entry.text, 'interrupted');
      turn = null;
      hooks.turnsEnded += 1;
      hooks.turnActive = false;
      updateStopButton();
      break;
    default:
      break; // mic-audio-end (server-side VAD) and others: nothing to do here
  }
}

const toolLines = new Map();

function onToolStatus(msg) {
  const id = String(msg.tool_id ?? '');
  const name = String(msg.tool_name ?? 'tool');
  const status = String(msg.status ?? '');
  const content = shorten(typeof msg.content === 'string' ? msg.content : JSON.stringify(msg.content ?? ''), 300);
  let text;
  let cls = '';
  if (status === 'running') text = `⚙ ${name}…${content ? ` ${content}` : ''}`;
  else if (status === 'completed') { text = `✓ ${name}${content ? `: ${content}` : ''}`; cls = 'completed'; }
  else if (status === 'error') { text = `✗ ${name}${content ? `: ${content}` : ''}`; cls = 'error'; }
  else text = `${name}: ${status}${content ? ` ${content}` : ''}`;
  const line = id ? toolLines.get(id) : undefined;
  if (line && chatItems.includes(line)) updateChat(line, text, cls);
  else {
    const item = addChat('tool', text, { cls });
    if (id) toolLines.set(id, item);
    if (toolLines.size > 200) toolLines.delete(toolLines.keys().next().value);
  }
}

// ---------------------------------------------------------------- UI wiring

function sendText(text) {
  if (!conn.open) {
    showError('Not connected to the daemon; the message was not sent.');
    return false;
  }
  player.unlock();
  if (turnBusy()) interrupt();
  conn.send({ type: 'text-input', text });
  pendingEcho.push({ text, at: performance.now() });
  addChat('user', text);
  return true;
}

el.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = el.textInput.value.trim();
  if (!text) return;
  if (sendText(text)) el.textInput.value = '';
});

el.stopButton.addEventListener('click', () => interrupt());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !el.approvalDialog.open && !el.historyDialog.open) interrupt();
});

el.micButton.addEventListener('click', () => setMic(!mic.active));

function applyMute(muted) {
  player.setMuted(muted);
  hooks.muted = muted;
  setPref('muted', muted);
  el.muteButton.setAttribute('aria-pressed', String(muted));
  el.muteButton.title = muted ? 'Unmute' : 'Mute';
  if (muted) {
    el.soundHint.hidden = true;
    if (turn && turn.synthDone) sendPlaybackComplete(turn);
  }
}
el.muteButton.addEventListener('click', () => {
  player.unlock();
  applyMute(!player.muted);
});

function setChatVisible(visible) {
  el.chatPanel.hidden = !visible;
  el.chatToggle.setAttribute('aria-expanded', String(visible));
}
el.chatToggle.addEventListener('click', () => setChatVisible(el.chatPanel.hidden));

el.noticeClose.addEventListener('click', () => { el.notice.hidden = true; });

function unlockSound() {
  player.unlock().then(() => { if (player.soundRunning) el.soundHint.hidden = true; });
}
el.soundEnable.addEventListener('click', unlockSound);
document.addEventListener('pointerdown', unlockSound, { passive: true });
document.addEventListener('keydown', unlockSound);

el.characterSelect.addEventListener('change', () => {
  const file = el.characterSelect.value;
  if (!file) return;
  if (conn.send({ type: 'switch-config', file })) el.characterSelect.disabled = true;
});

el.historyButton.addEventListener('click', () => {
  conn.send({ type: 'fetch-history-list' });
  if (!el.historyDialog.open) el.historyDialog.showModal();
});
el.historyClose.addEventListener('click', () => el.historyDialog.close());
el.historyNew.addEventListener('click', () => {
  conn.send({ type: 'create-new-history' });
  el.historyDialog.close();
});

el.approvalDialog.addEventListener('cancel', (e) => e.preventDefault()); // no silent dismissal
for (const b of el.approvalDialog.querySelectorAll('button[data-decision]')) {
  b.addEventListener('click', () => answerApproval(b.dataset.decision));
}

// ---------------------------------------------------------------- start

const leaving = handOverToken();
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/client-ws`;

const conn = new Connection(wsUrl, {
  onMessage(msg) {
    try {
      handle(msg);
    } catch (err) {
      console.error('vtuber: failed to handle', msg.type, err);
    }
  },
  onStatus(status, detail) {
    setConnStatus(status, detail);
    if (status === 'open') {
      hooks.connected = true;
      conn.send({ type: 'fetch-configs' });
      conn.send({ type: 'fetch-backgrounds' });
    } else if (status === 'closed') {
      const was = hooks.connected;
      hooks.connected = false;
      dropApprovals();
      if (turn) {
        turn = null;
        hooks.turnActive = false;
      }
      setState('idle');
      updateStopButton();
      if (!avatar) stageMessage('Waiting for the daemon…');
      if (was) console.info('vtuber: connection lost,', detail);
    }
  },
});

async function fetchPageConfig() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const res = await fetch('/api/page-config', {
      cache: 'no-store',
      credentials: 'same-origin',
      signal: ctl.signal,
    });
    if (!res.ok) return null;
    return await res.json();
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function start() {
  const muted = pref('muted', false);
  applyMute(muted);
  setChatVisible(!window.matchMedia('(max-width: 720px)').matches);
  el.micLevel.hidden = true;
  setState('idle');
  stageMessage('Connecting…');

  const config = await fetchPageConfig();
  if (config && typeof config.version === 'string') hooks.version = config.version;
  if (config && typeof config.authorized === 'boolean') hooks.authorized = config.authorized;
  if (config && config.authorized === false) {
    // Retrying cannot help: say how to get in.
    stageMessage('This page needs the daemon\'s access token: run `vtuber web url` and open the address it prints.');
    setConnStatus('closed', 'no access token (run `vtuber web url`)');
    return;
  }
  // The runtime a model needs loads with it, once `set-model-and-conf` names the model.
  if (config && typeof config.live2d_runtime === 'boolean') runtimes.cubism2 = config.live2d_runtime ? 'yes' : 'no';
  if (config && typeof config.cubism4_runtime === 'boolean') runtimes.cubism4 = config.cubism4_runtime ? 'yes' : 'no';
  if (config && typeof config.live2d_core_url === 'string' && config.live2d_core_url) coreUrl = config.live2d_core_url;
  if (runtimes.cubism2 === 'no' && runtimes.cubism4 === 'no') {
    showNotice('');
    useFallback(null);
  }
  conn.connect();
}

if (!leaving) start();
