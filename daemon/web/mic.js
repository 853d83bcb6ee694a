// Microphone capture for hands-free talking: getUserMedia (echo cancellation, noise
// suppression, auto gain) → AudioWorklet (ScriptProcessor where there is none) → 16 kHz
// mono → a small energy VAD in the page. While speech lasts, 16 kHz chunks go to the
// server as `mic-audio-data`; at its end, `mic-audio-end`.

export const TARGET_RATE = 16000;
const FRAME = 320; // 20 ms at 16 kHz
const FRAME_MS = 20;
const START_FRAMES = 4; // 80 ms above the start threshold starts an utterance
const HANGOVER_MS = 600; // this long below the stop threshold ends it
const PREROLL_FRAMES = 15; // 300 ms kept from before the start
const CHUNK_FRAMES = 5; // send every 100 ms
const MAX_UTTERANCE_MS = 30_000;

/** Streaming resampler: box-filtered (anti-aliased) fractional decimation, linear for upsampling. */
export class Resampler {
  constructor(inRate, outRate = TARGET_RATE) {
    this.step = inRate / outRate;
    this.pos = 0;
    this.tail = new Float32Array(0);
  }

  push(input) {
    const data = new Float32Array(this.tail.length + input.length);
    data.set(this.tail);
    data.set(input, this.tail.length);
    const out = [];
    const half = this.step / 2;
    let p = this.pos;
    if (this.step <= 1) {
      while (p + 1 < data.length) {
        const i = Math.floor(p);
        const f = p - i;
        out.push(data[i] * (1 - f) + data[i + 1] * f);
        p += this.step;
      }
    } else {
      while (p + half < data.length) {
        const a = Math.max(0, Math.floor(p - half));
        const b = Math.min(data.length, Math.ceil(p + half));
        let s = 0;
        for (let i = a; i < b; i++) s += data[i];
        out.push(s / (b - a));
        p += this.step;
      }
    }
    const keep = Math.max(0, Math.min(data.length, Math.floor(p - Math.max(half, 1))));
    this.tail = data.slice(keep);
    this.pos = p - keep;
    return Float32Array.from(out);
  }
}

/**
 * Energy VAD over 20 ms frames with an adaptive noise floor.
 * start threshold: max(0.02, floor × 3.5), raised while the avatar is speaking (echo);
 * stop threshold: max(0.012, floor × 2); 600 ms hangover.
 */
export class EnergyVad {
  constructor({ onStart, onChunk, onEnd, echoActive }) {
    this.onStart = onStart;
    this.onChunk = onChunk;
    this.onEnd = onEnd;
    this.echoActive = echoActive || (() => false);
    this.floor = 0.01;
    this.speaking = false;
    this.above = 0;
    this.silentMs = 0;
    this.spokenMs = 0;
    this.preroll = [];
    this.pending = [];
    this.frameBuf = new Float32Array(FRAME);
    this.frameFill = 0;
    this.level = 0;
  }

  push(samples16k) {
    let i = 0;
    while (i < samples16k.length) {
      const n = Math.min(FRAME - this.frameFill, samples16k.length - i);
      this.frameBuf.set(samples16k.subarray(i, i + n), this.frameFill);
      this.frameFill += n;
      i += n;
      if (this.frameFill === FRAME) {
        this.frame(this.frameBuf.slice());
        this.frameFill = 0;
      }
    }
  }

  frame(f) {
    let s = 0;
    for (let i = 0; i < f.length; i++) s += f[i] * f[i];
    const rms = Math.sqrt(s / f.length);
    this.level = rms;
    const startTh = Math.max(0.02, this.floor * 3.5) * (this.echoActive() ? 1.8 : 1);
    const stopTh = Math.max(0.012, this.floor * 2);
    if (!this.speaking) {
      // Track the noise floor only outside speech; fall fast, rise slowly.
      this.floor = rms < this.floor ? this.floor * 0.9 + rms * 0.1 : this.floor * 0.995 + rms * 0.005;
      this.floor = Math.min(0.05, Math.max(0.002, this.floor));
      this.preroll.push(f);
      if (this.preroll.length > PREROLL_FRAMES) this.preroll.shift();
      this.above = rms > startTh ? this.above + 1 : 0;
      if (this.above >= START_FRAMES) {
        this.speaking = true;
        this.silentMs = 0;
        this.spokenMs = this.preroll.length * FRAME_MS;
        this.pending = this.preroll;
        this.preroll = [];
        this.onStart();
        this.flush();
      }
      return;
    }
    this.pending.push(f);
    this.spokenMs += FRAME_MS;
    this.silentMs = rms < stopTh ? this.silentMs + FRAME_MS : 0;
    if (this.pending.length >= CHUNK_FRAMES) this.flush();
    if (this.silentMs >= HANGOVER_MS || this.spokenMs >= MAX_UTTERANCE_MS) this.end();
  }

  flush() {
    if (this.pending.length === 0) return;
    const out = new Float32Array(this.pending.length * FRAME);
    this.pending.forEach((f, k) => out.set(f, k * FRAME));
    this.pending = [];
    this.onChunk(out);
  }

  end() {
    if (!this.speaking) return;
    this.flush();
    this.speaking = false;
    this.above = 0;
    this.onEnd();
  }

  /** Drops an utterance in progress without sending its end. */
  reset() {
    this.speaking = false;
    this.above = 0;
    this.pending = [];
    this.preroll = [];
  }
}

export class Mic {
  /**
   * @param {object} h
   * @param {() => void} h.onSpeechStart
   * @param {(samples: Float32Array) => void} h.onChunk 16 kHz mono
   * @param {() => void} h.onSpeechEnd
   * @param {(rms: number, speaking: boolean) => void} h.onLevel
   * @param {() => boolean} h.echoActive  true while the avatar's voice may be in the room
   */
  constructor(h) {
    this.h = h;
    this.stream = null;
    this.ctx = null;
    this.node = null;
    this.sink = null;
    this.source = null;
    this.vad = null;
    this.resampler = null;
  }

  get active() {
    return this.stream !== null;
  }

  async start() {
    if (this.stream) return;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('the microphone needs a secure page (https, or http://localhost / 127.0.0.1)');
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      const ctx = new Ctx();
      if (ctx.state === 'suspended') await ctx.resume().catch(() => {});
      this.ctx = ctx;
      this.stream = stream;
      this.resampler = new Resampler(ctx.sampleRate, TARGET_RATE);
      this.vad = new EnergyVad({
        onStart: () => this.h.onSpeechStart(),
        onChunk: (c) => this.h.onChunk(c),
        onEnd: () => this.h.onSpeechEnd(),
        echoActive: this.h.echoActive,
      });
      this.source = ctx.createMediaStreamSource(stream);
      const onSamples = (samples) => {
        if (!this.vad) return;
        this.vad.push(this.resampler.push(samples));
        this.h.onLevel(this.vad.level, this.vad.speaking);
      };
      if (ctx.audioWorklet && typeof AudioWorkletNode === 'function') {
        await ctx.audioWorklet.addModule('/assets/mic-worklet.js');
        this.node = new AudioWorkletNode(ctx, 'vtuber-mic-capture', { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
        this.node.port.onmessage = (e) => onSamples(e.data);
      } else {
        this.node = ctx.createScriptProcessor(2048, 1, 1);
        this.node.onaudioprocess = (e) => onSamples(new Float32Array(e.inputBuffer.getChannelData(0)));
      }
      // Keep the node pulled by the graph without sending the microphone to the speaker.
      this.sink = ctx.createGain();
      this.sink.gain.value = 0;
      this.source.connect(this.node);
      this.node.connect(this.sink);
      this.sink.connect(ctx.destination);
    } catch (err) {
      stream.getTracks().forEach((t) => t.stop());
      this.stop();
      throw err;
    }
  }

  /** Stops capturing; an utterance in progress is ended (its audio was already sent). */
  stop() {
    if (this.vad && this.vad.speaking) this.vad.end();
    this.vad = null;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    try { if (this.source) this.source.disconnect(); } catch { /* gone */ }
    try { if (this.node) this.node.disconnect(); } catch { /* gone */ }
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
    this.node = null;
    this.source = null;
    this.sink = null;
  }
}
