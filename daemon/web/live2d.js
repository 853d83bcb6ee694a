// The Live2D avatar: pixi.js 6 + pixi-live2d-display (Cubism 2 build) + Live2D's Cubism 2
// runtime. All three are installed by scripts/fetch-web-assets.sh and served by the daemon
// under /libs/; none is shipped with vtuber (the runtime is Live2D Inc.'s proprietary code).

const MOUTH_PARAM = 'PARAM_MOUTH_OPEN_Y';

let runtimePromise = null;

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

/**
 * Loads the Cubism 2 runtime, pixi and the plugin once. The plugin expects the runtime's
 * classes (Live2D, Live2DModelWebGL, Live2DMotion, ...) as globals on `window` before its
 * classic script runs. fetch-web-assets.sh installs the runtime as a classic script that
 * sets them; a runtime that is an ES module exporting them works too (it is imported and
 * its exports are put on window). live2d-widget's own module build is not loadable as is:
 * it declares a function twice at top level, which browsers reject in a module.
 */
export function loadLive2DRuntime() {
  if (!runtimePromise) {
    runtimePromise = (async () => {
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
      if (!window.PIXI) await loadScript('/libs/pixi.min.js');
      if (!window.PIXI) throw new Error('pixi.min.js did not define PIXI');
      await loadScript('/libs/cubism2.min.js');
      const l2d = window.PIXI.live2d;
      if (!l2d || !l2d.Live2DModel) throw new Error('cubism2.min.js did not define PIXI.live2d');
      // Motion sounds off: the voice is ours, and some sample models name missing files.
      l2d.config.sound = false;
      l2d.config.logLevel = l2d.config.LOG_LEVEL_ERROR;
      l2d.Live2DModel.registerTicker(window.PIXI.Ticker);
    })();
    runtimePromise.catch(() => { runtimePromise = null; });
  }
  return runtimePromise;
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

/**
 * Creates the Live2D avatar in `container` for an OLV `model_info`.
 * @returns {Promise<object>} {kind, canvas, setMouth, setExpression, setModelInfo, resize, sample, destroy}
 */
export async function createLive2DAvatar(container, modelInfo, { onMouthApplied } = {}) {
  await loadLive2DRuntime();
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
    model = await PIXI.live2d.Live2DModel.from(modelInfo.url, options);
  } catch (err) {
    if (app) app.destroy(false, { children: true });
    canvas.remove();
    throw err;
  }
  app.stage.addChild(model);

  let info = modelInfo;
  let mouth = 0;
  const internal = model.internalModel;
  const core = internal.coreModel;
  internal.on('beforeModelUpdate', () => {
    core.setParamFloat(MOUTH_PARAM, mouth);
    if (onMouthApplied) onMouthApplied(core.getParamFloat(MOUTH_PARAM));
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

  return {
    kind: 'live2d',
    canvas,
    url: modelInfo.url,
    setMouth(v) { mouth = v; },
    /** `id`: an expression index or name from the model's emotionMap. */
    setExpression(id) {
      if (typeof id === 'number' || (typeof id === 'string' && id !== '')) {
        model.expression(id).catch(() => {});
      }
    },
    setModelInfo(next) { info = next; layout(); },
    resize: layout,
    destroy() {
      app.renderer.off('resize', layout);
      app.destroy(false, { children: true, texture: true, baseTexture: true });
      canvas.remove();
    },
  };
}
