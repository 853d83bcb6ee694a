// The built-in avatar: a face drawn with the canvas 2D API, our own drawing, no third-party
// assets. Used when the Live2D runtime is not installed or a model fails to load. It
// blinks, breathes, opens its mouth with the speech volume and shows a few moods.

const MOODS = {
  neutral: { eyes: 'open', brow: 0, mouthCurve: 0.5 },
  joy: { eyes: 'happy', brow: 0.1, mouthCurve: 1 },
  anger: { eyes: 'open', brow: -1, mouthCurve: -0.6 },
  sadness: { eyes: 'open', brow: 1, mouthCurve: -0.8 },
  surprise: { eyes: 'wide', brow: 0.6, mouthCurve: 0 },
  fear: { eyes: 'wide', brow: 1, mouthCurve: -0.4 },
  disgust: { eyes: 'half', brow: -0.6, mouthCurve: -0.5 },
  smirk: { eyes: 'half', brow: 0.2, mouthCurve: 0.8 },
};

/** Maps an emotion word (from the server's emotionMap) to one of our moods. */
function moodOf(word) {
  if (typeof word !== 'string') return 'neutral';
  const w = word.toLowerCase();
  if (MOODS[w]) return w;
  if (/happ|joy|smile|laugh|fun|excit/.test(w)) return 'joy';
  if (/ang|mad|annoy/.test(w)) return 'anger';
  if (/sad|cry|sorry/.test(w)) return 'sadness';
  if (/surpri|shock|wow/.test(w)) return 'surprise';
  if (/fear|scar/.test(w)) return 'fear';
  return 'neutral';
}

export function createFallbackAvatar(container, { onMouthApplied, name } = {}) {
  const canvas = document.createElement('canvas');
  canvas.className = 'avatar-canvas';
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${name || 'Built-in'} avatar`);
  container.prepend(canvas);
  const ctx = canvas.getContext('2d');

  let mouth = 0;
  let mood = 'neutral';
  let moodUntil = 0;
  let nextBlink = performance.now() + 1500;
  let blinkStart = -1;
  let raf = 0;
  let width = 0;
  let height = 0;
  let gaze = { x: 0, y: 0 };
  let gazeTarget = { x: 0, y: 0 };

  function resize() {
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const r = container.getBoundingClientRect();
    width = Math.max(1, Math.round(r.width));
    height = Math.max(1, Math.round(r.height));
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  const ro = typeof ResizeObserver === 'function' ? new ResizeObserver(resize) : null;
  if (ro) ro.observe(container); else window.addEventListener('resize', resize);
  resize();

  canvas.addEventListener('pointermove', (e) => {
    const r = canvas.getBoundingClientRect();
    gazeTarget = {
      x: Math.max(-1, Math.min(1, ((e.clientX - r.left) / r.width - 0.5) * 2)),
      y: Math.max(-1, Math.min(1, ((e.clientY - r.top) / r.height - 0.45) * 2)),
    };
  });
  canvas.addEventListener('pointerleave', () => { gazeTarget = { x: 0, y: 0 }; });
  canvas.addEventListener('click', () => { mood = 'joy'; moodUntil = performance.now() + 1500; });

  function ellipse(x, y, rx, ry, fill) {
    ctx.beginPath();
    ctx.ellipse(x, y, Math.max(0.1, rx), Math.max(0.1, ry), 0, 0, Math.PI * 2);
    ctx.fillStyle = fill;
    ctx.fill();
  }

  function drawEye(x, y, s, m, blink, side) {
    const rx = s * 0.115;
    let ry = s * 0.15;
    if (m.eyes === 'wide') ry *= 1.2;
    if (m.eyes === 'half') ry *= 0.55;
    const open = 1 - blink;
    ctx.lineCap = 'round';
    if (m.eyes === 'happy' || open < 0.15) {
      // closed / happy: an arc
      ctx.beginPath();
      if (m.eyes === 'happy') ctx.arc(x, y + ry * 0.25, rx, Math.PI * 1.1, Math.PI * 1.9);
      else ctx.arc(x, y - ry * 0.1, rx, Math.PI * 0.15, Math.PI * 0.85);
      ctx.strokeStyle = '#3a2c48';
      ctx.lineWidth = s * 0.035;
      ctx.stroke();
      return;
    }
    const h = ry * open;
    ellipse(x, y, rx * 1.05, h * 1.02, '#ffffff');
    const gx = gaze.x * rx * 0.3;
    const gy = gaze.y * h * 0.25;
    ellipse(x + gx, y + gy + h * 0.08, rx * 0.86, h * 0.9, '#5a3f8c');
    ellipse(x + gx, y + gy + h * 0.18, rx * 0.55, h * 0.58, '#2b1d45');
    ellipse(x + gx - rx * 0.3, y + gy - h * 0.3, rx * 0.26, h * 0.2, 'rgba(255,255,255,0.95)');
    ellipse(x + gx + rx * 0.28, y + gy + h * 0.35, rx * 0.12, h * 0.09, 'rgba(255,255,255,0.7)');
    // upper lid line with a small lash flick
    ctx.beginPath();
    ctx.ellipse(x, y, rx * 1.12, h * 1.05, 0, Math.PI * 1.05, Math.PI * 1.95);
    ctx.strokeStyle = '#2a2035';
    ctx.lineWidth = s * 0.03;
    ctx.stroke();
    ctx.beginPath();
    const ex = x + side * rx * 1.1;
    ctx.moveTo(ex, y - h * 0.35);
    ctx.lineTo(ex + side * rx * 0.3, y - h * 0.6);
    ctx.stroke();
  }

  function drawBrow(x, y, s, tilt, side) {
    // tilt > 0: inner end up (sad/worried); < 0: inner end down (angry)
    const len = s * 0.13;
    const inner = x - side * len;
    const outer = x + side * len;
    ctx.beginPath();
    ctx.moveTo(inner, y - tilt * s * 0.045);
    ctx.quadraticCurveTo(x, y - s * 0.03, outer, y + tilt * s * 0.02);
    ctx.strokeStyle = '#4b3566';
    ctx.lineWidth = s * 0.028;
    ctx.lineCap = 'round';
    ctx.stroke();
  }

  function drawMouth(x, y, s, open, curve) {
    if (open < 0.04) {
      ctx.beginPath();
      const w = s * 0.1;
      ctx.moveTo(x - w, y);
      ctx.quadraticCurveTo(x, y + curve * s * 0.07, x + w, y);
      ctx.strokeStyle = '#8a3d4f';
      ctx.lineWidth = s * 0.025;
      ctx.lineCap = 'round';
      ctx.stroke();
      return;
    }
    const w = s * (0.1 + 0.04 * open) * (mood === 'surprise' ? 0.75 : 1);
    const h = s * (0.02 + 0.17 * open);
    ctx.save();
    ctx.beginPath();
    ctx.ellipse(x, y + h * 0.35, w, h, 0, 0, Math.PI * 2);
    ctx.fillStyle = '#6e2236';
    ctx.fill();
    ctx.clip();
    ellipse(x, y + h * 1.2, w * 0.7, h * 0.6, '#e0707f');
    ellipse(x, y + h * 0.35 - h * 0.95, w * 0.8, h * 0.25, '#ffffff');
    ctx.restore();
    ctx.beginPath();
    ctx.ellipse(x, y + h * 0.35, w, h, 0, 0, Math.PI * 2);
    ctx.strokeStyle = '#7a3043';
    ctx.lineWidth = s * 0.012;
    ctx.stroke();
  }

  function draw(now) {
    raf = requestAnimationFrame(draw);
    if (moodUntil && now > moodUntil) { mood = 'neutral'; moodUntil = 0; }
    gaze.x += (gazeTarget.x - gaze.x) * 0.08;
    gaze.y += (gazeTarget.y - gaze.y) * 0.08;
    const m = MOODS[mood] || MOODS.neutral;
    let blink = 0;
    if (blinkStart < 0 && now >= nextBlink) blinkStart = now;
    if (blinkStart >= 0) {
      const t = (now - blinkStart) / 140;
      blink = t < 1 ? Math.sin(t * Math.PI) : 0;
      if (t >= 1) { blinkStart = -1; nextBlink = now + 2200 + Math.random() * 3000; }
    }

    ctx.clearRect(0, 0, width, height);
    const s = Math.min(width * 0.36, height * 0.3);
    const cx = width / 2 + gaze.x * s * 0.03;
    const breathe = Math.sin(now / 1000 * 1.7);
    const cy = height * 0.5 + breathe * s * 0.012;
    const tiltX = gaze.x * s * 0.04;

    // back hair
    ctx.beginPath();
    ctx.moveTo(cx - s * 1.02, cy - s * 0.2);
    ctx.bezierCurveTo(cx - s * 1.25, cy + s * 0.9, cx - s * 1.05, cy + s * 1.5, cx - s * 0.7, cy + s * 1.65);
    ctx.lineTo(cx + s * 0.7, cy + s * 1.65);
    ctx.bezierCurveTo(cx + s * 1.05, cy + s * 1.5, cx + s * 1.25, cy + s * 0.9, cx + s * 1.02, cy - s * 0.2);
    ctx.closePath();
    ctx.fillStyle = '#4c3a78';
    ctx.fill();
    ellipse(cx, cy - s * 0.15, s * 1.04, s * 1.0, '#4c3a78');

    // body and neck
    const by = cy + s * 1.05;
    ctx.beginPath();
    ctx.moveTo(cx - s * 0.95, height + 2);
    ctx.bezierCurveTo(cx - s * 0.9, by + s * 0.35, cx - s * 0.55, by + s * 0.12, cx - s * 0.25, by);
    ctx.lineTo(cx + s * 0.25, by);
    ctx.bezierCurveTo(cx + s * 0.55, by + s * 0.12, cx + s * 0.9, by + s * 0.35, cx + s * 0.95, height + 2);
    ctx.closePath();
    ctx.fillStyle = '#3d5fb8';
    ctx.fill();
    ctx.fillStyle = '#f5cdb8';
    ctx.fillRect(cx - s * 0.16, cy + s * 0.75, s * 0.32, s * 0.35);
    // collar
    ctx.beginPath();
    ctx.moveTo(cx - s * 0.28, by);
    ctx.lineTo(cx, by + s * 0.22);
    ctx.lineTo(cx + s * 0.28, by);
    ctx.strokeStyle = '#e8ecf7';
    ctx.lineWidth = s * 0.05;
    ctx.lineJoin = 'round';
    ctx.stroke();

    // face
    ellipse(cx + tiltX * 0.3, cy, s * 0.86, s * 0.94, '#ffe6d6');
    // blush
    const blushA = mood === 'joy' ? 0.55 : 0.32;
    ellipse(cx - s * 0.48 + tiltX, cy + s * 0.36, s * 0.14, s * 0.07, `rgba(255,130,150,${blushA})`);
    ellipse(cx + s * 0.48 + tiltX, cy + s * 0.36, s * 0.14, s * 0.07, `rgba(255,130,150,${blushA})`);

    // eyes, brows, mouth
    const ey = cy + s * 0.1;
    drawEye(cx - s * 0.36 + tiltX, ey, s, m, blink, -1);
    drawEye(cx + s * 0.36 + tiltX, ey, s, m, blink, 1);
    drawBrow(cx - s * 0.36 + tiltX, ey - s * 0.27, s, m.brow, 1);
    drawBrow(cx + s * 0.36 + tiltX, ey - s * 0.27, s, m.brow, -1);
    drawMouth(cx + tiltX, cy + s * 0.5, s, mouth, m.mouthCurve);

    // bangs
    // bangs: a cap over the top of the face with a jagged fringe
    ctx.beginPath();
    ctx.moveTo(cx - s * 0.93 + tiltX * 0.3, cy + s * 0.25);
    ctx.ellipse(cx + tiltX * 0.3, cy - s * 0.02, s * 0.93, s * 1.0, 0, Math.PI * 0.94, Math.PI * 2.06);
    const tips = 9;
    for (let i = tips; i >= 0; i--) {
      const tx = cx + tiltX * 0.5 - s * 0.86 + (s * 1.72 * i) / tips;
      const edge = Math.abs(i - tips / 2) / (tips / 2); // 0 in the middle, 1 at the sides
      const base = -0.3 + edge * edge * 0.45;
      ctx.lineTo(tx, cy + s * (i % 2 === 0 ? base : base - 0.2));
    }
    ctx.closePath();
    ctx.fillStyle = '#5a4690';
    ctx.fill();
    // shine on the hair
    ctx.beginPath();
    ctx.ellipse(cx - s * 0.3, cy - s * 0.62, s * 0.3, s * 0.06, -0.35, 0, Math.PI * 2);
    ctx.fillStyle = 'rgba(255,255,255,0.18)';
    ctx.fill();
    // hair clip: a small star
    ctx.save();
    ctx.translate(cx + s * 0.62, cy - s * 0.5);
    ctx.rotate(0.3 + breathe * 0.03);
    ctx.beginPath();
    for (let i = 0; i < 10; i++) {
      const r = i % 2 === 0 ? s * 0.11 : s * 0.045;
      const a = (i * Math.PI) / 5 - Math.PI / 2;
      ctx.lineTo(Math.cos(a) * r, Math.sin(a) * r);
    }
    ctx.closePath();
    ctx.fillStyle = '#ffcf5c';
    ctx.fill();
    ctx.restore();

    if (onMouthApplied) onMouthApplied(mouth);
  }
  raf = requestAnimationFrame(draw);

  return {
    kind: 'fallback',
    canvas,
    url: null,
    setMouth(v) { mouth = Math.max(0, Math.min(1, v)); },
    /** `word`: the emotion word of the expression (from the emotionMap), when known. */
    setExpression(_id, word) { mood = moodOf(word); moodUntil = 0; },
    setModelInfo() {},
    resize,
    destroy() {
      cancelAnimationFrame(raf);
      if (ro) ro.disconnect(); else window.removeEventListener('resize', resize);
      canvas.remove();
    },
  };
}
