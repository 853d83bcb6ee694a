// The Live2D avatar, Cubism 2 and Cubism 3/4 side by side, chosen per model by its file:
// a `.model3.json` is a Cubism 3+ model (pixi-live2d-display's Cubism 4 build over
// Live2D's Cubism Core), anything else a Cubism 2 `.model.json` (its Cubism 2 build over
// the Cubism 2.1 runtime). pixi.js 6 draws both. Everything here but this file is
// installed by scripts/fetch-web-assets.sh and served by the daemon under /libs/; none is
// shipped with vtuber (both Live2D runtimes are Live2D Inc.'s proprietary code). The
// Cubism Core may instead come from `web.live2d_core_url` (Live2D's current Core, which
// reads Cubism 5 models the npm Core 4.2.2 cannot).

/** Mouth parameters by runtime; a Cubism 3+ model's LipSync group may name its own. */
const MOUTH_PARAM = { cubism2: 'PARAM_MOUTH_OPEN_Y', cubism4: 'ParamMouthOpenY' };

/** moc3 format versions (the byte after `MOC3`) and the Cubism release that wrote them. */
const MOC_VERSIONS = { 1: '3.0', 2: '3.3', 3: '4.0', 4: '4.2', 5: '5.0', 6: '5.3' };

/** Where the Cubism Core comes from when the daemon names none. */
const BUNDLED_CORE = '/libs/live2dcubismcore.min.js';

/** A model that cannot be shown, with a message meant for the person looking at the page. */
export class AvatarLoadError extends Error {
  constructor(message, { kind = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'AvatarLoadError';
    this.kind = kind;
  }
}

/** `cubism4` for a Cubism 3+ model (`.model3.json`), `cubism2` otherwise. */
export function modelKind(url) {
  return /\.model3\.json(?:[?#].*)?$/i.test(String(url || '')) ? 'cubism4' : 'cubism2';
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement('script');
    el.src = src;
    el.async = false;
    el.onload = () => resolve();
    el.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(el);
  });
}

// Both plugin builds attach to the same `PIXI.live2d` object (`PIXI.live2d || {}`), and the
// second would overwrite the first's Live2DModel: each is loaded into a fresh object and
// kept here; loads run one at a time so they cannot interleave.
const builds = {};
let queue = Promise.resolve();
const runtimePromises = {};

function serially(fn) {
  const next = queue.then(fn, fn);
  queue = next.catch(() => {});
  return next;
}

async function loadPixi() {
  if (!window.PIXI) await loadScript('/libs/pixi.min.js');
  if (!window.PIXI) throw new Error('pixi.min.js did not define PIXI');
}

async function loadPluginBuild(file) {
  const PIXI = window.PIXI;
  const before = PIXI.live2d;
  delete PIXI.live2d;
  try {
    await loadScript(`/libs/${file}`);
    const l2d = PIXI.live2d;
    if (!l2d || !l2d.Live2DModel) throw new Error(`${file} did not define PIXI.live2d`);
    // Motion sounds off: the voice is ours, and some sample models name missing files.
    l2d.config.sound = false;
    l2d.config.logLevel = l2d.config.LOG_LEVEL_ERROR;
    l2d.Live2DModel.registerTicker(PIXI.Ticker);
    return l2d;
  } finally {
    if (before) PIXI.live2d = before;
  }
}

/**
 * The Cubism 2 runtime, pixi and the Cubism 2 plugin build. The plugin expects the
 * runtime's classes (Live2D, Live2DModelWebGL, Live2DMotion, ...) as globals on `window`
 * before its classic script runs. fetch-web-assets.sh installs the runtime as a classic
 * script that sets them; a runtime that is an ES module exporting them works too (it is
 * imported and its exports are put on window). live2d-widget's own module build is not
 * loadable as is: it declares a function twice at top level, which browsers reject in a
 * module.
 */
async function loadCubism2() {
  const url = '/libs/live2d.core.js';
  if (!window.Live2D || !window.Live2DModelWebGL) {
    const classicError = await loadScript(url).then(() => null, (err) => err);
    if (classicError && /could not load/.test(classicError.message)) throw classicError; // 404, not installed
  }
  if (!window.Live2D || !window.Live2DModelWebGL) {
    let core;
    try {
      core = await import(url);
    } catch (err) {
      throw new Error(`${url} is not a usable Cubism 2 runtime (${err.message}); run ./scripts/fetch-web-assets.sh again`);
    }
    if (!core.Live2D || !core.Live2DModelWebGL) throw new Error(`${url} does not provide the Cubism 2 runtime`);
    for (const [name, value] of Object.entries(core)) {
      if (!(name in window)) window[name] = value;
    }
  }
  await loadPixi();
  return loadPluginBuild('cubism2.min.js');
}

/** Cubism Core (bundled, or `coreUrl`), pixi and the Cubism 4 plugin build. */
async function loadCubism4(coreUrl) {
  const url = coreUrl || BUNDLED_CORE;
  if (!window.Live2DCubismCore) {
    try {
      await loadScript(url);
    } catch (err) {
      throw new Error(coreUrl
        ? `could not load the Cubism Core from web.live2d_core_url (${url}): check the address, and that this browser can reach it`
        : `could not load ${url}: run ./scripts/fetch-web-assets.sh`, { cause: err });
    }
  }
  if (!window.Live2DCubismCore) throw new Error(`${url} did not define Live2DCubismCore (is it Live2D's Cubism Core?)`);
  await loadPixi();
  return loadPluginBuild('cubism4.min.js');
}

/**
 * Loads the runtime a `kind` of model needs, once (a failure may be retried).
 * @param {'cubism2'|'cubism4'} kind
 * @param {{coreUrl?: string|null}} options the Cubism Core's address for `cubism4`
 */
export function loadLive2DRuntime(kind = 'cubism2', { coreUrl = null } = {}) {
  if (builds[kind]) return Promise.resolve(builds[kind]);
  if (!runtimePromises[kind]) {
    const p = serially(() => (kind === 'cubism4' ? loadCubism4(coreUrl) : loadCubism2()))
      .then((l2d) => { builds[kind] = l2d; return l2d; });
    runtimePromises[kind] = p;
    p.catch(() => { delete runtimePromises[kind]; });
  }
  return runtimePromises[kind];
}

/** `0x04020002` → `4.2.2`. */
function coreVersion() {
  try {
    const v = window.Live2DCubismCore.Version.csmGetVersion();
    return `${(v >>> 24) & 0xff}.${(v >>> 16) & 0xff}.${v & 0xffff}`;
  } catch {
    return 'unknown';
  }
}

function mocName(v) {
  return MOC_VERSIONS[v] || `format ${v}`;
}

/**
 * Checks a Cubism 3+ model's `.moc3` against the loaded Core before the plugin tries it:
 * a Core too old for the file only says "csmReviveMocInPlace is failed" on the console
 * and the plugin "Unknown error", which would leave an empty stage. Returns the moc3's
 * format version. Throws an AvatarLoadError that says what to do.
 */
async function checkMoc3(url) {
  let settings;
  try {
    const res = await fetch(url, { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    settings = await res.json();
  } catch (err) {
    throw new AvatarLoadError(`could not read the model file ${url} (${err.message})`, { kind: 'model', cause: err });
  }
  const moc = settings && settings.FileReferences && settings.FileReferences.Moc;
  if (typeof moc !== 'string' || !moc) {
    throw new AvatarLoadError(`${url} names no .moc3 file (FileReferences.Moc)`, { kind: 'model' });
  }
  const mocUrl = new URL(moc, new URL(url, location.href)).href;
  let head;
  try {
    const res = await fetch(mocUrl, { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    head = new Uint8Array(await res.arrayBuffer(), 0, 8);
  } catch (err) {
    throw new AvatarLoadError(`could not read the model's ${moc} (${err.message})`, { kind: 'model', cause: err });
  }
  const magic = String.fromCharCode(head[0], head[1], head[2], head[3]);
  if (magic !== 'MOC3') {
    throw new AvatarLoadError(`${moc} is not a Cubism .moc3 file (it does not start with MOC3)`, { kind: 'moc' });
  }
  const version = head[4];
  let latest = null;
  try {
    latest = window.Live2DCubismCore.Version.csmGetLatestMocVersion();
  } catch { /* a Core without the call: let it try */ }
  if (typeof latest === 'number' && version > latest) {
    throw new AvatarLoadError(
      `This model needs a newer Cubism Core: its ${moc} is moc3 ${mocName(version)} (Cubism ${mocName(version).split('.')[0]} Editor), `
      + `and the Cubism Core this page loaded (${coreVersion()}) reads up to moc3 ${mocName(latest)}. `
      + 'Set web.live2d_core_url to Live2D\'s current Core (https://cubism.live2d.com/sdk-web/cubismcore/live2dcubismcore.min.js), '
      + 'or export the model for an older SDK in the Cubism Editor.',
      { kind: 'moc-version' },
    );
  }
  return version;
}

function pickWeighted(weights) {
  const entries = Object.entries(weights || {}).filter(([, w]) => typeof w === 'number' && w > 0);
  const total = entries.reduce((s, [, w]) => s + w, 0);
  if (total <= 0) return null;
  let r = Math.random() * total;
  for (const [name, w] of entries) {
    r -= w;
    if (r <= 0) return name;
  }
  return entries[entries.length - 1][0];
}

/** The mouth parameter of a Cubism 3+ model: its LipSync group's open parameter. */
function cubism4Mouth(internal) {
  const groups = (internal.settings && internal.settings.groups) || [];
  const lip = groups.find((g) => g && g.Name === 'LipSync');
  const ids = (lip && Array.isArray(lip.Ids)) ? lip.Ids : [];
  return ids.find((id) => /mouth.*open/i.test(id)) || MOUTH_PARAM.cubism4;
}

/**
 * Creates the Live2D avatar in `container` for an OLV `model_info`.
 * @param {{coreUrl?: string|null, onMouthApplied?: function}} options
 * @returns {Promise<object>} {kind, runtime, canvas, url, setMouth, setExpression,
 *   expressionName, mouthParameter, fps, setModelInfo, resize, destroy}
 */
export async function createLive2DAvatar(container, modelInfo, { onMouthApplied, coreUrl = null } = {}) {
  const runtime = modelKind(modelInfo.url);
  const l2d = await loadLive2DRuntime(runtime, { coreUrl });
  const mocVersion = runtime === 'cubism4' ? await checkMoc3(modelInfo.url) : null;
  const PIXI = window.PIXI;
  const canvas = document.createElement('canvas');
  canvas.className = 'avatar-canvas';
  canvas.setAttribute('aria-label', `${modelInfo.name || 'Live2D'} avatar`);
  canvas.setAttribute('role', 'img');
  container.prepend(canvas);

  let app;
  let model;
  try {
    app = new PIXI.Application({
      view: canvas,
      resizeTo: container,
      backgroundAlpha: 0,
      antialias: true,
      autoDensity: true,
      resolution: Math.min(window.devicePixelRatio || 1, 2),
      // Lets tests and screenshots read the canvas back.
      preserveDrawingBuffer: true,
    });
    const options = { autoInteract: true };
    if (modelInfo.idleMotionGroupName) options.idleMotionGroup = modelInfo.idleMotionGroupName;
    model = await l2d.Live2DModel.from(modelInfo.url, options);
  } catch (err) {
    if (app) app.destroy(false, { children: true });
    canvas.remove();
    if (err instanceof AvatarLoadError) throw err;
    const why = err && err.message ? err.message : String(err);
    throw new AvatarLoadError(runtime === 'cubism4'
      ? `The Cubism Core (${coreVersion()}) could not load this model (moc3 ${mocName(mocVersion)}): ${why}`
      : `The Live2D model could not be loaded: ${why}`, { kind: 'load', cause: err });
  }
  app.stage.addChild(model);

  let info = modelInfo;
  let mouth = 0;
  const internal = model.internalModel;
  const core = internal.coreModel;
  const mouthParam = runtime === 'cubism4' ? cubism4Mouth(internal) : MOUTH_PARAM.cubism2;
  const setParam = runtime === 'cubism4'
    ? (v) => core.setParameterValueById(mouthParam, v)
    : (v) => core.setParamFloat(mouthParam, v);
  const getParam = runtime === 'cubism4'
    ? () => core.getParameterValueById(mouthParam)
    : () => core.getParamFloat(mouthParam);
  // After motions and expressions, before the model's own update: the voice wins.
  internal.on('beforeModelUpdate', () => {
    setParam(mouth);
    if (onMouthApplied) onMouthApplied(getParam());
  });

  function layout() {
    const w = app.renderer.screen.width;
    const h = app.renderer.screen.height;
    if (!w || !h) return;
    // OLV's kScale: a multiplier on "fit the stage" here (1 = fit). Tiny legacy values
    // (its older frontend's pixel factor, e.g. 0.000625) are ignored.
    const k = typeof info.kScale === 'number' && info.kScale > 0.01 && info.kScale <= 5 ? info.kScale : 1;
    const fit = Math.min(w / internal.width, (h * 0.96) / internal.height);
    model.scale.set(fit * k);
    model.anchor.set(0.5, 0.5);
    model.x = w / 2 + (Number(info.initialXshift) || 0);
    model.y = h / 2 + (Number(info.initialYshift) || 0);
  }
  layout();
  app.renderer.on('resize', layout);

  function tapMotion(areas) {
    const motions = internal.motionManager.definitions || {};
    const tap = info.tapMotions || {};
    let group = null;
    for (const area of areas) {
      group = pickWeighted(tap[area]);
      if (group !== null) break;
    }
    if (group === null) group = pickWeighted(tap['']) ?? pickWeighted(tap.default);
    if (group === null) {
      // No mapping: a group that looks like a tap, else any non-idle one.
      const names = Object.keys(motions).filter((g) => g !== internal.motionManager.groups.idle);
      group = names.find((g) => /tap/i.test(g) && (areas.length === 0 || areas.some((a) => g.toLowerCase().includes(a.toLowerCase()))))
        ?? names.find((g) => /tap/i.test(g)) ?? names[0] ?? null;
    }
    if (group !== null && group in motions) model.motion(group);
  }
  let hitHandled = false;
  model.on('hit', (areas) => { hitHandled = true; tapMotion(areas); });
  model.on('pointertap', () => {
    // 'hit' (from the plugin's own tap handler) fires first when a hit area was touched.
    if (!hitHandled) tapMotion([]);
    hitHandled = false;
  });

  const expressions = () => internal.motionManager.expressionManager;

  return {
    kind: 'live2d',
    runtime,
    canvas,
    url: modelInfo.url,
    mouthParameter: mouthParam,
    mocVersion,
    coreVersion: runtime === 'cubism4' ? coreVersion() : null,
    setMouth(v) { mouth = v; },
    /** `id`: an expression index or name from the model's emotionMap. */
    setExpression(id) {
      if (typeof id === 'number' || (typeof id === 'string' && id !== '')) {
        return model.expression(id).catch(() => false);
      }
      return Promise.resolve(false);
    },
    /** The name of the expression on the face now (Cubism 3+: `Name`, Cubism 2: `name`). */
    expressionName() {
      const em = expressions();
      if (!em || !em.currentExpression) return null;
      const i = em.expressions.indexOf(em.currentExpression);
      const def = i >= 0 ? em.definitions[i] : null;
      return def ? (def.Name ?? def.name ?? null) : null;
    },
    fps() { return Math.round(app.ticker.FPS * 10) / 10; },
    setModelInfo(next) { info = next; layout(); },
    resize: layout,
    destroy() {
      app.renderer.off('resize', layout);
      app.destroy(false, { children: true, texture: true, baseTexture: true });
      canvas.remove();
    },
  };
}
