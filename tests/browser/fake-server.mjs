#!/usr/bin/env node
// A small stand-in for vtuberd's web server, for developing and testing the avatar page
// without the daemon: the same HTTP routes, and an Open-LLM-VTuber WebSocket at /client-ws
// that plays a scripted turn (generated speech-like WAVs with volumes) for every input.
//
//   node fake-server.mjs [--port 0] [--web ../../daemon/web] [--assets DIR] [--no-live2d]
//                        [--token SECRET] [--verbose]
//
// --assets defaults to ${VTUBER_DATA_DIR:-${XDG_DATA_HOME:-~/.local/share}/vtuber}/web (what
// scripts/fetch-web-assets.sh installs). --no-live2d serves no libs and says
// live2d_runtime: false. Prints "listening http://127.0.0.1:PORT/" once ready.
//
// Special inputs: "approve ..." asks for a tool approval first, "error ..." answers with an
// error message, "silent ..." answers with text-only sentences (audio null).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const dataDir = process.env.VTUBER_DATA_DIR
    || path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'vtuber');
  const a = { port: 0, web: path.resolve(here, '../../daemon/web'), assets: path.join(dataDir, 'web'),
    live2d: true, token: '', verbose: false, host: '127.0.0.1' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { i += 1; if (i >= argv.length) throw new Error(`${k} needs a value`); return argv[i]; };
    if (k === '--port') a.port = Number(v());
    else if (k === '--web') a.web = path.resolve(v());
    else if (k === '--assets') a.assets = path.resolve(v());
    else if (k === '--no-live2d') a.live2d = false;
    else if (k === '--token') a.token = v();
    else if (k === '--verbose') a.verbose = true;
    else throw new Error(`unknown option ${k}`);
  }
  return a;
}

const args = parseArgs(process.argv);
const log = (...m) => { if (args.verbose) console.error('[fake]', ...m); };

// The policy the page is meant to work under; the real server should send the same.
const CSP = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-eval'", // pixi.js 6 compiles shaders' uniform sync with new Function
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' data: blob:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.svg': 'image/svg+xml', '.mp3': 'audio/mpeg', '.wav': 'audio/wav', '.moc': 'application/octet-stream',
  '.mtn': 'application/octet-stream',
};

function send(res, status, body, type = 'text/plain; charset=utf-8') {
  res.writeHead(status, {
    'Content-Type': type, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer',
  });
  res.end(body);
}

function sendFile(res, file) {
  fs.readFile(file, (err, data) => {
    if (err) return send(res, 404, 'not found\n');
    send(res, 200, data, TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream');
  });
}

/** Joins a URL path under root; null when it would leave root. */
function safeJoin(root, rel) {
  const decoded = decodeURIComponent(rel);
  if (decoded.includes('\0')) return null;
  const full = path.resolve(root, `.${path.posix.normalize(`/${decoded}`)}`);
  return full.startsWith(path.resolve(root) + path.sep) ? full : null;
}

// Like the daemon: `?token=` on the page becomes an HttpOnly cookie (the test stand-in keeps
// the token itself in it), then the browser goes on to the clean address.
const COOKIE = 'vtuber-auth-fake';
const hasCookie = (req) => (req.headers.cookie || '').split(';').some((c) => c.trim() === `${COOKIE}=${args.token}`);
const authorized = (req, url) => !args.token || url.searchParams.get('token') === args.token || hasCookie(req);

const live2dInstalled = () => args.live2d && fs.existsSync(path.join(args.assets, 'libs', 'live2d.core.js'));

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
  if ((p === '/' || p === '/index.html') && args.token && url.searchParams.has('token')) {
    if (url.searchParams.get('token') !== args.token) return send(res, 401, 'wrong token\n');
    url.searchParams.delete('token');
    res.writeHead(303, { Location: `${p}${url.search}`, 'Set-Cookie': `${COOKIE}=${args.token}; Path=/; HttpOnly; SameSite=Strict` });
    return res.end();
  }
  if (p === '/' || p === '/index.html') return sendFile(res, path.join(args.web, 'index.html'));
  if (p === '/api/page-config') {
    return send(res, 200, JSON.stringify({ live2d_runtime: live2dInstalled(), token_required: !!args.token,
      authorized: authorized(req, url), version: 'fake-server' }), 'application/json');
  }
  let m = /^\/assets\/([A-Za-z0-9_.-]+)$/.exec(p);
  if (m && !m[1].startsWith('.')) return sendFile(res, path.join(args.web, m[1]));
  m = /^\/libs\/([A-Za-z0-9_.-]+)$/.exec(p);
  if (m) return args.live2d ? sendFile(res, path.join(args.assets, 'libs', m[1])) : send(res, 404, 'not installed\n');
  if (p.startsWith('/live2d-models/')) {
    const f = safeJoin(path.join(args.assets, 'live2d-models'), p.slice('/live2d-models/'.length));
    return f ? sendFile(res, f) : send(res, 404, 'not found\n');
  }
  return send(res, 404, 'not found\n');
});

// ---------------------------------------------------------------- speech-like audio

/** A 16-bit mono WAV of a voiced buzz with syllable-like loudness, plus OLV volumes. */
function makeSpeech(text, seed) {
  const rate = 16000;
  const seconds = Math.min(3.2, 0.6 + text.length * 0.045);
  const n = Math.round(rate * seconds);
  const pcm = new Int16Array(n);
  let rnd = seed * 9301 + 49297;
  const rand = () => { rnd = (rnd * 9301 + 49297) % 233280; return rnd / 233280; };
  // syllables: 5 per second with random loudness, short gaps between words
  const syl = [];
  for (let t = 0; t < seconds; t += 0.2) syl.push(rand() < 0.15 ? 0 : 0.35 + 0.65 * rand());
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const k = Math.floor(t / 0.2);
    const within = (t % 0.2) / 0.2;
    const env = syl[k] * Math.sin(Math.PI * within) ** 0.6 * Math.min(1, t * 20, (seconds - t) * 20);
    const f0 = 170 + 25 * Math.sin(2 * Math.PI * 0.7 * t);
    phase += (2 * Math.PI * f0) / rate;
    const v = 0.55 * Math.sin(phase) + 0.25 * Math.sin(2 * phase) + 0.12 * Math.sin(3 * phase);
    pcm[i] = Math.round(Math.max(-1, Math.min(1, v * env * 0.8)) * 32767);
  }
  const slice = 20;
  const per = (rate * slice) / 1000;
  const rms = [];
  for (let s = 0; s < n; s += per) {
    let acc = 0;
    const end = Math.min(n, s + per);
    for (let i = s; i < end; i++) acc += (pcm[i] / 32768) ** 2;
    rms.push(Math.sqrt(acc / (end - s)));
  }
  const max = Math.max(...rms, 1e-9);
  const volumes = rms.map((r) => Math.round((r / max) * 1000) / 1000);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0); header.writeUInt32LE(36 + n * 2, 4); header.write('WAVE', 8);
  header.write('fmt ', 12); header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20); header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24); header.writeUInt32LE(rate * 2, 28); header.writeUInt16LE(2, 32); header.writeUInt16LE(16, 34);
  header.write('data', 36); header.writeUInt32LE(n * 2, 40);
  const wav = Buffer.concat([header, Buffer.from(pcm.buffer)]);
  return { audio: wav.toString('base64'), volumes, slice_length: slice };
}

// ---------------------------------------------------------------- the OLV WebSocket

const MODEL_INFO = {
  name: 'shizuku',
  url: '/live2d-models/shizuku/shizuku.model.json',
  kScale: 1,
  initialXshift: 0,
  initialYshift: 0,
  kXOffset: 0,
  idleMotionGroupName: 'idle',
  emotionMap: { neutral: 0, joy: 1, anger: 2, sadness: 3, surprise: 1 },
  tapMotions: { body: { tap_body: 30, shake: 30 }, head: { flick_head: 40, shake: 20 } },
};
const CONFIGS = [{ filename: 'mao.toml', name: 'Mao' }, { filename: 'sage.toml', name: 'Sage' }];
let character = CONFIGS[0];
const histories = [];
const clients = new Set();
let callSeq = 0;

const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const origin = req.headers.origin;
  const host = req.headers.host;
  const refuse = (code, why) => { socket.write(`HTTP/1.1 ${code} ${why}\r\nConnection: close\r\n\r\n`); socket.destroy(); };
  if (url.pathname !== '/client-ws') return refuse(404, 'Not Found');
  if (origin && origin !== `http://${host}`) return refuse(403, 'Forbidden');
  if (!authorized(req, url)) return refuse(401, 'Unauthorized');
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws));
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

wss.on('connection', (ws) => {
  const client = { ws, uid: `client-${Math.random().toString(36).slice(2, 10)}`, turn: null, micSamples: 0,
    waiters: new Map() };
  clients.add(client);
  const out = (msg) => { if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg)); };
  client.out = out;
  const modelAndConf = () => out({ type: 'set-model-and-conf', model_info: MODEL_INFO, conf_name: character.name,
    conf_uid: character.filename.replace(/\.toml$/, ''), client_uid: client.uid });
  out({ type: 'full-text', text: 'Connection established' });
  modelAndConf();
  out({ type: 'group-update', members: [], is_owner: false });
  out({ type: 'control', text: 'start-mic' });
  out({ type: 'state', state: 'idle' });

  const waitFor = (type, ms) => new Promise((resolve) => {
    const t = setTimeout(() => { client.waiters.delete(type); resolve(null); }, ms);
    client.waiters.set(type, (msg) => { clearTimeout(t); client.waiters.delete(type); resolve(msg); });
  });

  async function runTurn(text, fromMic) {
    if (client.turn) client.turn.cancelled = true;
    const turn = { cancelled: false };
    client.turn = turn;
    const live = () => !turn.cancelled && ws.readyState === ws.OPEN;
    out({ type: 'control', text: 'conversation-chain-start' });
    out({ type: 'state', state: 'thinking' });
    out({ type: 'full-text', text: 'Thinking...' });
    if (fromMic) out({ type: 'user-input-transcription', text });
    for (const other of clients) if (other !== client) other.out({ type: 'user-input', text, origin: 'browser' });
    await sleep(200);
    if (/^error\b/i.test(text)) {
      out({ type: 'error', message: 'The fake LLM failed on purpose.' });
    } else {
      if (/^approve\b/i.test(text)) {
        const request_id = Math.floor(Math.random() * 1e6);
        out({ type: 'approval-request', request_id, tool: 'write_file', server: 'files',
          description: 'Write a file in the sandbox', arguments: { path: 'notes/hello.txt', content: 'hi <b>there</b>' }, timeout_secs: 20 });
        const ans = await waitFor('approval-response', 20_000);
        const resolution = !ans ? 'timed_out' : ans.decision === 'deny' ? 'denied'
          : ans.decision === 'allow_for_session' ? 'approved_for_session' : 'approved';
        out({ type: 'approval-resolved', request_id, resolution });
      }
      const silent = /^silent\b/i.test(text);
      const sentences = [
        { text: `You said: ${text}.`, expr: null },
        { text: 'This is a scripted reply from the fake server.', expr: null, tool: true },
        { text: 'Goodbye for now!', expr: [1] },
      ];
      let first = true;
      for (const [i, s] of sentences.entries()) {
        if (!live()) break;
        if (s.tool) {
          callSeq += 1;
          out({ type: 'tool_call_status', tool_id: `call-${callSeq}`, tool_name: 'get_time', status: 'running', content: '{"zone":"UTC"}', timestamp: new Date().toISOString(), name: character.name });
          await sleep(100);
          out({ type: 'tool_call_status', tool_id: `call-${callSeq}`, tool_name: 'get_time', status: 'completed', content: '12:00', timestamp: new Date().toISOString(), name: character.name });
        }
        const speech = silent ? { audio: null, volumes: [], slice_length: 20 } : makeSpeech(s.text, i + 1);
        out({ type: 'audio', ...speech, display_text: { text: s.text, name: character.name, avatar: null },
          actions: s.expr ? { expressions: s.expr } : null, forwarded: false });
        if (first) { out({ type: 'state', state: 'speaking' }); first = false; }
        await sleep(120);
      }
      if (live()) {
        out({ type: 'backend-synth-complete' });
        const done = await Promise.race([waitFor('frontend-playback-complete', 30_000), waitFor('interrupt-signal', 30_000)]);
        log('playback', done ? done.type : 'timed out');
      }
    }
    if (ws.readyState !== ws.OPEN || client.turn !== turn) return;
    out({ type: 'force-new-message' });
    out({ type: 'control', text: 'conversation-chain-end' });
    out({ type: 'state', state: 'idle' });
    client.turn = null;
    histories.unshift({ uid: `h-${Date.now()}`, latest_message: { role: 'human', timestamp: new Date().toISOString(), content: text }, timestamp: new Date().toISOString() });
  }

  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try { msg = JSON.parse(String(data)); } catch { return out({ type: 'error', message: 'bad JSON' }); }
    if (msg.type !== 'mic-audio-data' && msg.type !== 'heartbeat') log('got', msg.type, msg.text ?? msg.decision ?? '');
    const waiter = client.waiters.get(msg.type);
    if (waiter) waiter(msg);
    switch (msg.type) {
      case 'text-input': runTurn(String(msg.text ?? ''), false); break;
      case 'mic-audio-data': client.micSamples += Array.isArray(msg.audio) ? msg.audio.length : 0; break;
      case 'mic-audio-end': {
        const secs = client.micSamples / 16000;
        client.micSamples = 0;
        runTurn(`I heard ${secs.toFixed(1)} seconds of audio`, true);
        break;
      }
      case 'interrupt-signal':
        log('interrupted; heard:', JSON.stringify(msg.text));
        if (client.turn) {
          client.turn.cancelled = true;
          client.turn = null;
          out({ type: 'control', text: 'conversation-chain-end' });
          out({ type: 'state', state: 'idle' });
        }
        break;
      case 'heartbeat': out({ type: 'heartbeat-ack' }); break;
      case 'fetch-configs': out({ type: 'config-files', configs: CONFIGS }); break;
      case 'switch-config': {
        const c = CONFIGS.find((x) => x.filename === msg.file);
        if (!c) { out({ type: 'error', message: `no such character: ${msg.file}` }); break; }
        character = c;
        modelAndConf();
        out({ type: 'config-switched', message: `Switched to ${c.name}` });
        break;
      }
      case 'fetch-backgrounds': out({ type: 'background-files', files: [] }); break;
      case 'fetch-history-list': out({ type: 'history-list', histories }); break;
      case 'fetch-and-set-history':
        out({ type: 'history-data', messages: [
          { role: 'human', timestamp: new Date().toISOString(), content: 'an old question' },
          { role: 'ai', timestamp: new Date().toISOString(), content: 'an old answer', name: character.name },
        ] });
        break;
      case 'create-new-history': out({ type: 'new-history-created', history_uid: `h-${Date.now()}` }); break;
      case 'delete-history': {
        const i = histories.findIndex((h) => h.uid === msg.history_uid);
        if (i >= 0) histories.splice(i, 1);
        out({ type: 'history-deleted', success: i >= 0, history_uid: msg.history_uid });
        break;
      }
      default: break;
    }
  });
  ws.on('close', () => { clients.delete(client); if (client.turn) client.turn.cancelled = true; });
});

server.listen(args.port, args.host, () => {
  const { port } = server.address();
  console.log(`listening http://${args.host}:${port}/`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
