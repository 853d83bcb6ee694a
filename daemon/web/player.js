// One ordered playback queue for the turn's speech (OLV `audio` messages), with lip sync.
//
// Items play strictly in order. A speech item carries a base64 WAV (or null: text only),
// the normalised RMS `volumes` per `sliceLength` ms, and whatever the caller attached.
// Marker items run a callback when the queue reaches them (used for "the turn's audio is
// done" and "start a new chat bubble here").
//
// Timing is driven by a clock of our own (performance.now) with the WebAudio source's
// `ended` as the usual end: when the page is muted, or the browser blocks sound until the
// user interacts, or there is no audio output at all, items still advance at their real
// duration, so subtitles and the mouth follow the daemon's own speaker.

const MOUTH_HISTORY_MAX = 4000;

function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// A fallback for decodeAudioData: PCM 16-bit (or 8/24/32-bit int, 32-bit float) WAV.
function parseWav(bytes, ctx) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (o) => String.fromCharCode(bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]);
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return null;
  let fmt = null;
  let off = 12;
  while (off + 8 <= bytes.length) {
    const id = tag(off);
    let size = dv.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      fmt = { format: dv.getUint16(body, true), channels: dv.getUint16(body + 2, true),
        rate: dv.getUint32(body + 4, true), bits: dv.getUint16(body + 14, true) };
    } else if (id === 'data' && fmt) {
      if (size === 0 || body + size > bytes.length) size = bytes.length - body; // streamed WAVs
      const bps = fmt.bits / 8;
      const frames = Math.floor(size / (bps * fmt.channels));
      if (frames <= 0 || !fmt.rate) return null;
      const buf = ctx.createBuffer(fmt.channels, frames, fmt.rate);
      for (let c = 0; c < fmt.channels; c++) {
        const ch = buf.getChannelData(c);
        for (let i = 0; i < frames; i++) {
          const p = body + (i * fmt.channels + c) * bps;
          let v = 0;
          if (fmt.format === 3 && bps === 4) v = dv.getFloat32(p, true);
          else if (bps === 2) v = dv.getInt16(p, true) / 32768;
          else if (bps === 1) v = (dv.getUint8(p) - 128) / 128;
          else if (bps === 3) v = ((dv.getUint8(p + 2) << 24 | dv.getUint8(p + 1) << 16 | dv.getUint8(p) << 8) >> 8) / 8388608;
          else if (bps === 4) v = dv.getInt32(p, true) / 2147483648;
          ch[i] = v;
        }
      }
      return buf;
    }
    off = body + size + (size & 1);
  }
  return null;
}

/** Mouth opening (0..1) for a normalised RMS value. */
export function mouthFromLevel(v) {
  if (!(v > 0)) return 0;
  return Math.min(1, Math.max(0, (v - 0.04) * 1.45));
}

export class Player {
  /**
   * @param {object} h
   * @param {(item: object) => void} h.onItemStart  a speech item begins (show its subtitle)
   * @param {(item: object, completed: boolean) => void} h.onItemEnd
   * @param {(value: number) => void} h.onMouth  target mouth opening, every animation frame while speaking
   * @param {() => void} h.onSoundBlocked  the browser would not start sound without a user gesture
   */
  constructor(h) {
    this.h = h;
    this.ctx = null;
    this.gain = null;
    this.analyser = null;
    this.muted = false;
    this.queue = [];
    this.pumping = false;
    this.generation = 0;
    this.current = null; // the item sounding now, with its clock
    this.active = null; // the item being decoded or played
    this.finishCurrent = null;
    this.mouth = 0;
    this.rafId = 0;
    this.tick = this.tick.bind(this);
  }

  ensureContext() {
    if (this.ctx) return this.ctx;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    this.ctx = new Ctx();
    this.gain = this.ctx.createGain();
    this.gain.gain.value = this.muted ? 0 : 1;
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.analyser.connect(this.gain);
    this.gain.connect(this.ctx.destination);
    return this.ctx;
  }

  /** Call from a user gesture: lets the browser start sound. */
  unlock() {
    const ctx = this.ensureContext();
    if (ctx && ctx.state === 'suspended') return ctx.resume().catch(() => {});
    return Promise.resolve();
  }

  get soundRunning() {
    return !!this.ctx && this.ctx.state === 'running';
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.gain) this.gain.gain.setTargetAtTime(muted ? 0 : 1, this.ctx.currentTime, 0.01);
  }

  /** True while something is playing or waiting to play. */
  get busy() {
    return this.active !== null || this.queue.some((it) => it.kind === 'speech');
  }

  /** Queues a speech item: {audio: base64|null, volumes: number[], sliceLength: ms, ...extra}. */
  enqueueSpeech(item) {
    const it = { ...item, kind: 'speech' };
    if (typeof it.audio === 'string' && it.audio.length > 0) it.decoded = this.decode(it.audio);
    this.queue.push(it);
    this.pump();
  }

  /** Queues a callback that runs when every item queued before it has finished. */
  enqueueMarker(run) {
    this.queue.push({ kind: 'marker', run });
    this.pump();
  }

  async decode(b64) {
    const ctx = this.ensureContext();
    if (!ctx) return null;
    let bytes;
    try {
      bytes = base64ToBytes(b64);
    } catch {
      console.warn('vtuber: audio is not valid base64');
      return null;
    }
    try {
      // decodeAudioData detaches its argument: hand it a copy.
      return await ctx.decodeAudioData(bytes.slice().buffer);
    } catch {
      try {
        return parseWav(bytes, ctx);
      } catch {
        return null;
      }
    }
  }

  /** Stops at once and drops everything queued (barge-in, new turn). Markers are dropped too. */
  stopAll() {
    this.generation += 1;
    this.queue.length = 0;
    if (this.finishCurrent) this.finishCurrent(false);
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const item = this.queue.shift();
        if (item.kind === 'marker') {
          try { item.run(); } catch (err) { console.error(err); }
          continue;
        }
        this.active = item;
        try {
          await this.play(item, this.generation);
        } finally {
          this.active = null;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  async play(item, gen) {
    const buffer = item.decoded ? await item.decoded : null;
    if (gen !== this.generation) return;
    const volumes = Array.isArray(item.volumes) ? item.volumes : [];
    const slice = item.sliceLength > 0 ? item.sliceLength : 20;
    let durationMs = buffer ? buffer.duration * 1000 : volumes.length * slice;
    if (!(durationMs > 0)) durationMs = 0;
    this.h.onItemStart(item);
    if (durationMs === 0) {
      this.h.onItemEnd(item, true);
      return;
    }

    let source = null;
    let latencyMs = 0;
    const ctx = this.ctx;
    if (buffer && ctx) {
      if (ctx.state !== 'running') {
        ctx.resume().catch(() => {});
        if (!this.muted) this.h.onSoundBlocked();
      }
      if (ctx.state === 'running') {
        source = ctx.createBufferSource();
        source.buffer = buffer;
        source.connect(this.analyser);
        source.start();
        latencyMs = ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;
      }
    }
    const completed = await new Promise((resolve) => {
      let done = false;
      const finish = (ok) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(ok);
      };
      // The source's `ended` is the normal end; the timer covers a context that does not
      // run (no output device, sound blocked, muted before sound was allowed).
      const timer = setTimeout(() => finish(true), durationMs + (source ? 400 : 0));
      if (source) source.onended = () => finish(true);
      this.finishCurrent = finish;
      this.current = { item, source, t0: performance.now() + latencyMs, durationMs, volumes, slice };
      if (!this.rafId) this.rafId = requestAnimationFrame(this.tick);
    });
    if (source) {
      source.onended = null;
      try { source.stop(); } catch { /* already stopped */ }
      source.disconnect();
    }
    this.current = null;
    this.finishCurrent = null;
    this.h.onItemEnd(item, completed);
  }

  levelNow(cur) {
    const elapsed = performance.now() - cur.t0;
    if (elapsed < 0) return 0;
    if (cur.volumes.length > 0) {
      const v = cur.volumes[Math.floor(elapsed / cur.slice)];
      return typeof v === 'number' ? v : 0;
    }
    if (cur.source && this.analyser) {
      // No volumes from the server: measure what is playing.
      const data = new Float32Array(this.analyser.fftSize);
      this.analyser.getFloatTimeDomainData(data);
      let s = 0;
      for (let i = 0; i < data.length; i++) s += data[i] * data[i];
      return Math.min(1, Math.sqrt(s / data.length) * 4);
    }
    return 0;
  }

  tick() {
    this.rafId = 0;
    const cur = this.current;
    const target = cur ? mouthFromLevel(this.levelNow(cur)) : 0;
    // Open fast, close a little slower: looks less jittery than the raw slices.
    this.mouth += (target - this.mouth) * (target > this.mouth ? 0.7 : 0.4);
    if (this.mouth < 0.005) this.mouth = 0;
    this.h.onMouth(this.mouth);
    if (cur || this.mouth > 0) this.rafId = requestAnimationFrame(this.tick);
  }
}

export { MOUTH_HISTORY_MAX };
