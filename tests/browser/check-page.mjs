#!/usr/bin/env node
// Loads vtuberd's avatar page in headless Chromium, holds one text turn and checks what a
// person would see and hear: connected, subtitles, chat log, a drawn avatar, a moving mouth.
//
//   node check-page.mjs --url http://127.0.0.1:PORT/ --text "hello" --out DIR
//                       [--expect-live2d] [--expect-runtime cubism2|cubism4]
//                       [--expect-expression NAME] [--expect-avatar-error TEXT]
//                       [--mic] [--timeout SECONDS] [--chromium PATH]
//
// --expect-runtime: the Live2D model shown must use that runtime (Cubism 2, or Cubism 3/4
// through the Cubism Core), and its pixels must change between frames (it idles).
// --expect-expression: after the turn, the model's current expression must be NAME (the
// reply's emotion tag, mapped through the character's emotion map).
// --expect-avatar-error: the character's model cannot be shown; the page must say so in
// its notice (containing TEXT) and draw its own avatar instead of an empty stage.
// Always reported: the model's load time (avatar_load_ms) and frame rate (fps).
//
// A --url with ?token= (what `vtuber web url` prints) is also checked for the access token:
// without it the page must say so rather than connect; with it the token must leave the
// address for a cookie scripts cannot read; and a #token= address must work too.
//
// --mic also talks into the page's microphone (Chromium's fake capture device playing a
// generated WAV) and checks that an utterance went to the server and was answered.
// Prints one JSON line of observations; writes DIR/page.png (after the turn),
// DIR/speaking.png (mid-sentence) and DIR/result.json.
// Exit code 0 only when every check passes (1: a check failed, 2: bad usage or no browser).
//
// Uses the system Chromium (/usr/bin/chromium) through playwright-core; never downloads one.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

function usage(msg) {
  if (msg) console.error(`check-page: ${msg}`);
  console.error('usage: node check-page.mjs --url URL --text TEXT --out DIR [--expect-live2d] [--expect-runtime R] [--expect-expression NAME] [--expect-avatar-error TEXT] [--mic] [--timeout S] [--chromium PATH]');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { url: '', text: '', out: '', expectLive2d: false, expectRuntime: '', expectExpression: '',
    expectAvatarError: '', mic: false, timeout: 90,
    chromium: process.env.CHROMIUM || '/usr/bin/chromium' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { i += 1; if (i >= argv.length) usage(`${k} needs a value`); return argv[i]; };
    if (k === '--url') a.url = v();
    else if (k === '--text') a.text = v();
    else if (k === '--out') a.out = v();
    else if (k === '--expect-live2d') a.expectLive2d = true;
    else if (k === '--expect-runtime') { a.expectRuntime = v(); a.expectLive2d = true; }
    else if (k === '--expect-expression') a.expectExpression = v();
    else if (k === '--expect-avatar-error') a.expectAvatarError = v();
    else if (k === '--mic') a.mic = true;
    else if (k === '--timeout') a.timeout = Number(v());
    else if (k === '--chromium') a.chromium = v();
    else if (k === '-h' || k === '--help') usage();
    else usage(`unknown argument ${k}`);
  }
  if (!a.url || !a.text || !a.out) usage('--url, --text and --out are required');
  if (!(a.timeout > 0)) usage('--timeout must be a positive number of seconds');
  return a;
}

/** A 16 kHz mono WAV for the fake microphone: silence, ~1.2 s of voiced "speech", silence. */
function micWav(file) {
  const rate = 16000;
  const n = rate * 4;
  const pcm = new Int16Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    let env = 0;
    if (t >= 0.8 && t < 2.0) env = 0.25 + 0.2 * Math.abs(Math.sin(Math.PI * 4 * (t - 0.8)));
    phase += (2 * Math.PI * (160 + 20 * Math.sin(2 * Math.PI * t))) / rate;
    pcm[i] = Math.round((0.6 * Math.sin(phase) + 0.3 * Math.sin(2 * phase)) * env * 32767);
  }
  const h = Buffer.alloc(44);
  h.write('RIFF', 0); h.writeUInt32LE(36 + n * 2, 4); h.write('WAVE', 8); h.write('fmt ', 12);
  h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22); h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34); h.write('data', 36);
  h.writeUInt32LE(n * 2, 40);
  fs.writeFileSync(file, Buffer.concat([h, Buffer.from(pcm.buffer)]));
}

const args = parseArgs(process.argv);
fs.mkdirSync(args.out, { recursive: true });
if (!fs.existsSync(args.chromium)) {
  console.error(`check-page: no Chromium at ${args.chromium} (install it: apt-get install chromium)`);
  process.exit(2);
}

const started = Date.now();
const deadline = started + args.timeout * 1000;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vtuber-chromium-'));
const errors = [];
const pageErrors = [];
const obs = { ok: false, url: args.url, connected: false };
const checks = {};
const steps = [];

const flags = [
  // models-and-assets.md's WebGL-in-headless flags (Playwright adds --headless and the
  // user-data dir itself), plus autoplay without a gesture.
  '--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
  '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];
if (args.mic) {
  const wav = path.join(profile, 'mic.wav');
  micWav(wav);
  flags.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}`);
}

/** Polls fn in the page until it returns a truthy value or the deadline passes. */
async function waitFor(page, what, fn, arg, maxMs) {
  const until = Math.min(deadline, Date.now() + (maxMs ?? Infinity));
  for (;;) {
    let v;
    try {
      v = await page.evaluate(fn, arg);
    } catch (err) {
      if (!String(err).includes('Execution context was destroyed')) throw err;
    }
    if (v) { steps.push(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`); return v; }
    if (Date.now() > until) { steps.push(`${what}: timed out`); return null; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const hooks = () => {
  const v = window.__vtuber;
  if (!v) return null;
  const keys = ['connected', 'live2d', 'avatarKind', 'avatarReady', 'audioPlayed', 'subtitles', 'subtitlesSeen',
    'chatLog', 'lastError', 'state', 'turnsStarted', 'turnsEnded', 'turnActive', 'playbackCompleteSent',
    'micUtterances', 'micChunksSent', 'mouthHistory', 'version', 'live2dRuntime', 'avatarError', 'avatarLoadMs',
    'fps', 'expression', 'expressionsSet', 'mouthParameter', 'mocVersion', 'coreVersion', 'avatarUrl'];
  const o = {};
  for (const k of keys) o[k] = v[k];
  return o;
};

/** Share of the avatar canvas's pixels that are drawn (the canvas is transparent elsewhere). */
const canvasStats = async () => {
  const c = [...document.querySelectorAll('#stage canvas')].find((x) => x.width > 0 && x.height > 0);
  if (!c) return { ratio: 0, width: 0, height: 0, colours: 0 };
  const w = 320;
  const h = Math.max(1, Math.round((c.height / c.width) * w));
  const off = document.createElement('canvas');
  off.width = w;
  off.height = h;
  const ctx = off.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(c, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  let drawn = 0;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 16) {
      drawn += 1;
      colours.add(((d[i] >> 4) << 8) | ((d[i + 1] >> 4) << 4) | (d[i + 2] >> 4));
    }
  }
  return { ratio: drawn / (w * h), width: c.width, height: c.height, colours: colours.size };
};

/** Share of the avatar canvas's pixels that differ between two frames `ms` apart. */
const canvasChange = async (ms) => {
  const c = [...document.querySelectorAll('#stage canvas')].find((x) => x.width > 0 && x.height > 0);
  if (!c) return 0;
  const w = 320;
  const h = Math.max(1, Math.round((c.height / c.width) * w));
  const grab = () => {
    const off = document.createElement('canvas');
    off.width = w;
    off.height = h;
    const ctx = off.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(c, 0, 0, w, h);
    return ctx.getImageData(0, 0, w, h).data;
  };
  const a = grab();
  await new Promise((r) => setTimeout(r, ms));
  const b = grab();
  let changed = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) + Math.abs(a[i + 3] - b[i + 3]) > 24) changed += 1;
  }
  return changed / (w * h);
};

let context;
let exitCode = 1;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: flags,
    viewport: { width: 1280, height: 800 },
    ignoreDefaultArgs: ['--mute-audio'], // let the page's audio run as it would for a person
  });
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text().slice(0, 500)); });
  page.on('pageerror', (e) => { pageErrors.push(String(e && e.message ? e.message : e).slice(0, 500)); });

  const goto = (url) => page.goto(url, { waitUntil: 'load', timeout: Math.max(1000, deadline - Date.now()) });
  const tokened = new URL(args.url);
  const token = tokened.searchParams.get('token');
  if (token) {
    // Without the token the page is served but must not get in, and must say why.
    const bare = new URL(tokened);
    bare.searchParams.delete('token');
    await goto(bare.href);
    const refused = await waitFor(page, 'refused without the token',
      () => window.__vtuber && window.__vtuber.authorized === false, null, 15_000);
    obs.without_token = await page.evaluate(() => ({
      connected: window.__vtuber.connected,
      message: document.querySelector('#stage-message')?.textContent || '',
    }));
    checks.refused_without_token = !!refused && !obs.without_token.connected
      && obs.without_token.message.includes('vtuber web url');
  }
  await goto(args.url);
  obs.connected = !!(await waitFor(page, 'connected', () => window.__vtuber && window.__vtuber.connected, null, 30_000));
  if (token) {
    obs.address = page.url();
    checks.token_left_the_address = !obs.address.includes('token');
    checks.cookie_hidden_from_scripts = !(await page.evaluate(() => document.cookie.includes('vtuber-auth')));
  }
  // The avatar: Live2D loads after `set-model-and-conf`; the built-in one at once.
  await waitFor(page, 'avatar', (expect) => window.__vtuber && window.__vtuber.avatarReady
    && (!expect || window.__vtuber.live2d || (window.__vtuber.avatarKind === 'fallback')), args.expectLive2d, 45_000);
  if (args.expectAvatarError) {
    await waitFor(page, 'avatar error', () => window.__vtuber.avatarError, null, 20_000);
  }
  // Frames move: the model idles (breath, blinks, idle motions) without any input.
  obs.canvas_change_ratio = Math.round((await page.evaluate(canvasChange, 1000)) * 10000) / 10000;
  await page.screenshot({ path: path.join(args.out, 'avatar.png') }).catch(() => {});

  const none = { turnsEnded: 0, turnsStarted: 0 };
  const before = (await page.evaluate(hooks)) || none;
  if (obs.connected) {
    await page.fill('#text-input', args.text);
    await page.press('#text-input', 'Enter');
    // A picture mid-sentence, for people looking at the results (not a check).
    const speaking = await waitFor(page, 'speaking', () => window.__vtuber.mouthHistory.some((v) => v > 0.3), null, 30_000);
    if (speaking) await page.screenshot({ path: path.join(args.out, 'speaking.png') }).catch(() => {});
    await waitFor(page, 'turn played', (n) => {
      const v = window.__vtuber;
      return v.audioPlayed > 0 && v.turnsEnded > n && !v.turnActive;
    }, before.turnsEnded);
  }

  let micObs = null;
  if (args.mic && obs.connected) {
    const b = (await page.evaluate(hooks)) || none;
    await page.click('#mic-button');
    const heard = await waitFor(page, 'mic utterance', () => window.__vtuber.micUtterances > 0, null, 30_000);
    await page.click('#mic-button'); // stop listening (the fake file loops)
    const answered = heard && await waitFor(page, 'mic turn', (n) => {
      const v = window.__vtuber;
      return v.turnsEnded > n && !v.turnActive;
    }, b.turnsEnded, 45_000);
    const a = (await page.evaluate(hooks)) || none;
    micObs = { chunks: a.micChunksSent, utterances: a.micUtterances, answered: !!answered };
  }

  // Let the avatar settle to a frame after speech before reading pixels.
  await page.waitForTimeout(300);
  const h = (await page.evaluate(hooks)) || { ...none, turnsEnded: before.turnsEnded };
  const stats = await page.evaluate(canvasStats);
  await page.screenshot({ path: path.join(args.out, 'page.png') });

  const mouth = h.mouthHistory || [];
  let changes = 0;
  for (let i = 1; i < mouth.length; i++) if (Math.abs(mouth[i] - mouth[i - 1]) > 0.02) changes += 1;
  const chat = (h.chatLog || []).map((m) => ({ role: m.role, text: m.text }));
  const userSeen = chat.some((m) => m.role === 'user' && m.text === args.text);
  const reply = chat.filter((m) => m.role === 'ai' && m.text.trim()).map((m) => m.text).join(' ');
  const subtitlesSeen = h.subtitlesSeen || [];

  Object.assign(obs, {
    live2d: !!h.live2d,
    avatar: h.avatarKind,
    version: h.version,
    subtitles: h.subtitles,
    subtitles_seen: subtitlesSeen,
    chat,
    audio_played: h.audioPlayed,
    turns_started: h.turnsStarted - before.turnsStarted,
    turns_ended: h.turnsEnded - before.turnsEnded,
    playback_complete_sent: h.playbackCompleteSent,
    mouth_samples: mouth.length,
    mouth_max: mouth.length ? Math.max(...mouth) : 0,
    mouth_mean: mouth.length ? Math.round((mouth.reduce((s, x) => s + x, 0) / mouth.length) * 1000) / 1000 : 0,
    mouth_changes: changes,
    canvas_nonblank_ratio: Math.round(stats.ratio * 10000) / 10000,
    canvas_colours: stats.colours,
    canvas_size: [stats.width, stats.height],
    last_error: h.lastError,
    state: h.state,
    mic: micObs,
    errors,
    page_errors: pageErrors,
    steps,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  });

  checks.connected = obs.connected;
  checks.audio_played = h.audioPlayed > 0;
  checks.turn_ended = obs.turns_ended >= 1;
  checks.playback_complete_sent = h.playbackCompleteSent > 0;
  checks.subtitles = subtitlesSeen.length > 0 && !!h.subtitles && reply.includes(subtitlesSeen[subtitlesSeen.length - 1]);
  checks.chat_user = userSeen;
  checks.chat_reply = reply.length > 0;
  checks.canvas_nonblank = stats.ratio > 0.01 && stats.colours > 8;
  checks.mouth_moved = obs.mouth_max > 0.1 && changes >= 5;
  checks.no_server_error = !h.lastError;
  checks.no_page_errors = pageErrors.length === 0;
  if (args.expectLive2d) checks.live2d = !!h.live2d;
  Object.assign(obs, {
    live2d_runtime: h.live2dRuntime,
    avatar_url: h.avatarUrl,
    avatar_load_ms: h.avatarLoadMs,
    fps: h.fps,
    expression: h.expression,
    expressions_set: h.expressionsSet,
    mouth_parameter: h.mouthParameter,
    moc_version: h.mocVersion,
    core_version: h.coreVersion,
    avatar_error: h.avatarError,
  });
  if (args.expectRuntime) {
    checks.runtime = h.live2dRuntime === args.expectRuntime;
    checks.canvas_animates = obs.canvas_change_ratio > 0.001;
  }
  if (args.expectExpression) {
    const got = await waitFor(page, 'expression', (name) => window.__vtuber.expression === name, args.expectExpression, 10_000);
    obs.expression = await page.evaluate(() => window.__vtuber.expression);
    checks.expression = !!got;
  }
  if (args.expectAvatarError) {
    obs.notice = await page.evaluate(() => {
      const n = document.querySelector('#notice');
      return { shown: !!n && !n.hidden, text: n ? n.innerText.replace(/\s+/g, ' ').trim() : '' };
    });
    checks.avatar_error_said = obs.notice.shown && obs.notice.text.includes(args.expectAvatarError)
      && String(h.avatarError || '').includes(args.expectAvatarError);
    checks.stage_not_blank = h.avatarKind === 'fallback';
  }
  if (token) {
    // A #token= address (never sent to a server) gets in too, once the cookie is gone.
    await context.clearCookies();
    await page.goto('about:blank'); // a new document, not a same-page hash change
    const hashed = new URL(tokened);
    hashed.searchParams.delete('token');
    hashed.hash = `token=${encodeURIComponent(token)}`;
    await goto(hashed.href);
    const again = await waitFor(page, 'connected by #token', () => window.__vtuber && window.__vtuber.connected, null, 30_000);
    checks.hash_token = !!again && !page.url().includes('token');
  }
  if (args.mic) checks.mic = !!micObs && micObs.chunks > 0 && micObs.utterances > 0 && micObs.answered;
} catch (err) {
  obs.exception = String(err && err.stack ? err.stack : err).slice(0, 2000);
  checks.ran = false;
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}

obs.checks = checks;
obs.failed = Object.entries(checks).filter(([, v]) => !v).map(([k]) => k);
obs.ok = Object.keys(checks).length > 0 && obs.failed.length === 0;
if (!('errors' in obs)) { obs.errors = errors; obs.page_errors = pageErrors; obs.steps = steps; }
exitCode = obs.ok ? 0 : 1;
const line = JSON.stringify(obs);
fs.writeFileSync(path.join(args.out, 'result.json'), `${JSON.stringify(obs, null, 2)}\n`);
console.log(line);
process.exit(exitCode);
