// render.js — the numerics of the browser hover layer: pure functions, no DOM, no imports.
// Colours and maps here; pixel/cell geometry and the rows of D are in point_map.js.
//
// Every function mirrors one in Python (simviz_widgets.render / explain / widgets), operation by
// operation, so the browser paints the pixels Python computes:
//   * numpy float32 arithmetic is reproduced as float64 arithmetic followed by Math.fround. For a
//     single +, -, *, / of float32 operands this gives the correctly rounded float32 result (the
//     float64 result is exact or rounds harmlessly), i.e. exactly what numpy computes;
//   * float64 steps stay float64, in Python's evaluation order (no FMA either side);
//   * np.round is round-half-to-even (roundHalfEven), and so is the conversion a Uint8ClampedArray
//     applies on assignment (ECMAScript ToUint8Clamp), which the blend relies on.
// Only the products of the point-to-point rows differ in summation order (numpy hands them to BLAS),
// so those agree to float32 rounding, not bit for bit.
// Coordinates are (row, col) everywhere; canvas positions are (y, x).
//
// Top-level names are unique across js/ (the files get concatenated): private helpers start with
// `render`.

export const renderSides = ["query", "reference"];
export const renderReadings = ["contribution", "correspondence"];
const renderModes = ["minmax", "symmetric", "none"];

/** numpy's np.round (decimals=0): ties go to the even integer; keeps the sign of zero like numpy. */
export function roundHalfEven(x) {
  if (!Number.isFinite(x)) return x;
  const f = Math.floor(x);
  const d = x - f; // exact: the fractional part of a double is representable
  let r;
  if (d < 0.5) r = f;
  else if (d > 0.5) r = f + 1;
  else r = f % 2 === 0 ? f : f + 1;
  // np.round(-0.3) is -0.0; keep that so results compare equal to numpy's with Object.is.
  return r === 0 && (x < 0 || Object.is(x, -0)) ? -0 : r;
}

export function renderCheckSize(size, label) {
  if (!Array.isArray(size) && !ArrayBuffer.isView(size)) {
    throw new Error(`${label}: expected [rows, cols], got ${String(size)}`);
  }
  const rows = size[0];
  const cols = size[1];
  if (size.length !== 2 || !Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new Error(`${label}: expected [rows, cols] of positive integers, got [${Array.from(size).join(", ")}]`);
  }
  return [rows, cols];
}

export function renderCheckLength(values, length, label) {
  if (values == null || values.length !== length) {
    const got = values == null ? String(values) : `${values.length} values`;
    throw new Error(`${label}: expected ${length} values, got ${got}`);
  }
}

export function renderCheckChoice(value, choices, label) {
  if (!choices.includes(value)) {
    throw new Error(`${label}: expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, ` +
      `got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * resize.source_positions: for each of nOut output pixels the lower and upper source cell and the
 * weight of the upper one; position ((p + 0.5) * nIn) / nOut - 0.5 clamped to [0, nIn - 1].
 * @returns {{lower: Int32Array, upper: Int32Array, weight: Float64Array}}
 */
export function sourcePositions(nOut, nIn) {
  const lower = new Int32Array(nOut);
  const upper = new Int32Array(nOut);
  const weight = new Float64Array(nOut);
  for (let p = 0; p < nOut; p++) {
    // Same grouping as Python: a pixel on a cell centre gets weight exactly 0.
    let pos = ((p + 0.5) * nIn) / nOut - 0.5;
    pos = Math.min(Math.max(pos, 0.0), nIn - 1.0);
    const lo = Math.floor(pos);
    lower[p] = lo;
    upper[p] = Math.min(lo + 1, nIn - 1);
    weight[p] = pos - lo;
  }
  return { lower, upper, weight };
}

// Positions depend only on (nOut, nIn): hovers redraw the same sizes over and over, so keep them.
const renderPositionCache = new Map();

function renderPositions(nOut, nIn) {
  const key = `${nOut}:${nIn}`;
  let found = renderPositionCache.get(key);
  if (found === undefined) {
    if (renderPositionCache.size >= 64) renderPositionCache.clear();
    found = sourcePositions(nOut, nIn);
    renderPositionCache.set(key, found);
  }
  return found;
}

// The column pass of the upsampling, (h, cols) in float64 as numpy keeps it (not rounded to float32).
function renderAlongCols(values, h, w, cols, out) {
  const { lower, upper, weight } = renderPositions(cols, w);
  for (let r = 0; r < h; r++) {
    const base = r * w;
    const o = r * cols;
    for (let c = 0; c < cols; c++) {
      const fc = weight[c];
      out[o + c] = values[base + lower[c]] * (1.0 - fc) + values[base + upper[c]] * fc;
    }
  }
  return out;
}

/**
 * resize.upsample_bilinear: a (h, w) map to (rows, cols), half-pixel centres, edges clamped.
 * Columns first, then rows, in float64, rounded to float32 at the end — bit-identical to Python.
 * @param {ArrayLike<number>} values h*w, row-major
 * @param {number[]} shape [h, w]
 * @param {number[]} size [rows, cols]
 * @returns {Float32Array} rows*cols
 */
export function upsampleBilinear(values, shape, size) {
  const [h, w] = renderCheckSize(shape, "upsampleBilinear shape");
  const [rows, cols] = renderCheckSize(size, "upsampleBilinear size");
  renderCheckLength(values, h * w, "upsampleBilinear values");
  const along = renderAlongCols(values, h, w, cols, new Float64Array(h * cols));
  const { lower, upper, weight } = renderPositions(rows, h);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const top = lower[r] * cols;
    const bottom = upper[r] * cols;
    const fr = weight[r];
    const o = r * cols;
    for (let c = 0; c < cols; c++) {
      out[o + c] = along[top + c] * (1.0 - fr) + along[bottom + c] * fr; // Float32Array store = astype(float32)
    }
  }
  return out;
}

/**
 * The limits colormap.normalize_map uses: [lo, hi].
 * "symmetric": -L..L with L the largest |value| (or the largest |given limit|); "minmax": the given
 * limits, else the map's min/max; "none": the given limits, else 0 and 1. Throws if hi < lo.
 */
export function normalizeLimits(values, mode, vmin = null, vmax = null) {
  renderCheckChoice(mode, renderModes, "normalizeLimits mode");
  const hasMin = vmin !== null && vmin !== undefined;
  const hasMax = vmax !== null && vmax !== undefined;
  const needsValues = (mode === "symmetric" && !hasMin && !hasMax) || (mode === "minmax" && (!hasMin || !hasMax));
  if (needsValues && (values == null || values.length === 0)) {
    throw new Error("normalizeLimits values: expected a non-empty map, got no values");
  }
  let lo;
  let hi;
  if (mode === "symmetric") {
    let limit = 0;
    if (!hasMin && !hasMax) {
      limit = -Infinity;
      for (let i = 0; i < values.length; i++) {
        const a = Math.abs(values[i]);
        if (a > limit || Number.isNaN(a)) limit = a; // np.max propagates NaN
      }
    } else {
      limit = Math.max(...[vmin, vmax].filter((v) => v !== null && v !== undefined).map((v) => Math.abs(Number(v))));
    }
    lo = -limit;
    hi = limit;
  } else if (mode === "minmax") {
    if (!hasMin || !hasMax) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      lo = hasMin ? Number(vmin) : mn;
      hi = hasMax ? Number(vmax) : mx;
    } else {
      lo = Number(vmin);
      hi = Number(vmax);
    }
  } else {
    lo = hasMin ? Number(vmin) : 0.0;
    hi = hasMax ? Number(vmax) : 1.0;
  }
  if (hi < lo) throw new Error(`vmax (${hi}) is smaller than vmin (${lo}); expected vmin <= vmax`);
  return [lo, hi];
}

/**
 * normalize_map's unit array: float32(clip((v - lo) / (hi - lo), 0, 1)), computed in float64 like
 * numpy. A flat scale (hi <= lo) has no contrast: all 0.5 for "symmetric" (0 stays in the middle),
 * else all 0.
 * @returns {Float32Array}
 */
export function unitValues(values, mode, lo, hi) {
  renderCheckChoice(mode, renderModes, "unitValues mode");
  const n = values.length;
  const out = new Float32Array(n);
  const span = hi - lo;
  if (!(span > 0)) {
    out.fill(mode === "symmetric" ? 0.5 : 0.0);
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = Math.min(Math.max((values[i] - lo) / span, 0.0), 1.0);
  return out;
}

function renderCheckLut(lut) {
  if (lut == null || lut.length !== 1024) {
    throw new Error(`lut: expected 1024 bytes (256 x RGBA), got ${lut == null ? String(lut) : lut.length}`);
  }
}

function renderCheckAlpha(alpha) {
  if (!(typeof alpha === "number" && alpha >= 0 && alpha <= 1)) {
    throw new Error(`alpha: expected a number in [0, 1], got ${String(alpha)}`);
  }
}

function renderDefaultMode(values) {
  // map_to_rgba / overlay without a mode: signed maps (any value < 0) are symmetric.
  for (let i = 0; i < values.length; i++) if (values[i] < 0) return "symmetric";
  return "minmax";
}

/**
 * colormap.map_to_rgba(values, cmap=<lut>, mode, vmin=lo, vmax=hi, alpha, alpha_from_value):
 * RGBA bytes per value. Float32 steps as numpy: the unit value, index np.round(unit * 255), the
 * opacity (alpha, times the value's strength with alphaFromValue: |unit - 0.5| * 2 for
 * "symmetric", unit otherwise) and the rounded alpha channel.
 * @returns {Uint8ClampedArray} n*4
 */
export function colourMap(values, { lut, mode, lo = null, hi = null, alpha = 1, alphaFromValue = false } = {}) {
  renderCheckLut(lut);
  renderCheckAlpha(alpha);
  if (mode === undefined || mode === null) mode = renderDefaultMode(values);
  const [vlo, vhi] = normalizeLimits(values, mode, lo, hi); // as normalize_map does with vmin/vmax
  const unit = unitValues(values, mode, vlo, vhi);
  const n = unit.length;
  const out = new Uint8ClampedArray(n * 4);
  const alpha32 = Math.fround(alpha); // np.full(shape, alpha, np.float32)
  const symmetric = mode === "symmetric";
  for (let i = 0; i < n; i++) {
    const u = unit[i];
    const index = roundHalfEven(Math.fround(u * 255.0)) * 4; // float32 product, then np.round
    let opacity = alpha32;
    if (alphaFromValue) {
      const strength = symmetric ? Math.fround(Math.abs(Math.fround(u - 0.5)) * 2.0) : u;
      opacity = Math.fround(opacity * strength);
    }
    const o = i * 4;
    out[o] = lut[index];
    out[o + 1] = lut[index + 1];
    out[o + 2] = lut[index + 2];
    out[o + 3] = roundHalfEven(Math.fround(lut[index + 3] * opacity));
  }
  return out;
}

// Reused between hovers: the column pass of blendOverPhoto (grown as needed, never shrunk).
let renderBlendScratch = new Float64Array(0);

/**
 * overlay.overlay(photo_rgb, values, alpha, cmap=<lut>, mode, vmin=lo, vmax=hi, alpha_from_value=True):
 * the (h, w) map upsampled to the photo's size, coloured (map_to_rgba at alpha 1, opacity following
 * the value) and blended over the photo: out = (1 - a) * photo + a * colour with
 * a = alpha * rgba_alpha / 255, in float64, rounded half-even. Bit-identical to Python.
 * lo/hi null: the raw map's own limits (as overlay with vmin/vmax None).
 * @param {Uint8Array|Uint8ClampedArray} photo rows*cols*channels bytes
 * @param {number} channels 3 or 4 (a 4th channel is ignored)
 * @param {number[]} size [rows, cols] of the photo
 * @param {ArrayLike<number>} values the map, h*w
 * @param {number[]} shape [h, w]
 * @param {Uint8ClampedArray} [out] rows*cols*4 buffer to fill (allocated if absent)
 * @returns {Uint8ClampedArray} RGBA, alpha 255
 */
export function blendOverPhoto(photo, channels, size, values, shape, { lut, mode, lo = null, hi = null, alpha } = {},
  out = null) {
  const [rows, cols] = renderCheckSize(size, "blendOverPhoto size");
  const [h, w] = renderCheckSize(shape, "blendOverPhoto shape");
  if (channels !== 3 && channels !== 4) throw new Error(`blendOverPhoto channels: expected 3 or 4, got ${channels}`);
  renderCheckLength(photo, rows * cols * channels, "blendOverPhoto photo");
  renderCheckLength(values, h * w, "blendOverPhoto values");
  renderCheckLut(lut);
  renderCheckAlpha(alpha);
  if (out === null || out === undefined) out = new Uint8ClampedArray(rows * cols * 4);
  else renderCheckLength(out, rows * cols * 4, "blendOverPhoto out");
  if (mode === undefined || mode === null) mode = renderDefaultMode(values);

  // Limits from the raw map (overlay's first normalize_map); map_to_rgba's second one, over the
  // upsampled map with these as vmin/vmax, returns them unchanged for every mode.
  const [vlo, vhi] = normalizeLimits(values, mode, lo, hi);
  const span = vhi - vlo;
  const flat = !(span > 0);
  const flatUnit = mode === "symmetric" ? 0.5 : 0.0;
  const symmetric = mode === "symmetric";

  // a = alpha * (A / 255) takes 256 values only: tabulate (same float64 operations as numpy).
  const blendWeight = new Float64Array(256);
  for (let k = 0; k < 256; k++) blendWeight[k] = alpha * (k / 255.0);

  if (renderBlendScratch.length < h * cols) renderBlendScratch = new Float64Array(h * cols);
  const along = renderAlongCols(values, h, w, cols, renderBlendScratch);
  const { lower, upper, weight } = renderPositions(rows, h);

  for (let r = 0; r < rows; r++) {
    const top = lower[r] * cols;
    const bottom = upper[r] * cols;
    const fr = weight[r];
    const gr = 1.0 - fr;
    let p = r * cols * channels;
    let o = r * cols * 4;
    for (let c = 0; c < cols; c++, p += channels, o += 4) {
      // upsample_bilinear's row pass, then astype(float32)
      const v = Math.fround(along[top + c] * gr + along[bottom + c] * fr);
      // normalize_map: float32(clip((v - lo) / span, 0, 1))
      let u = flatUnit;
      if (!flat) {
        const q = (v - vlo) / span;
        u = Math.fround(q < 0.0 ? 0.0 : q > 1.0 ? 1.0 : q);
      }
      // lut index: np.round(unit * 255) in float32. Round half to even without branching on the
      // fraction (those branches are unpredictable and cost more than the rest of the pixel):
      // t is a float32 in [0, 255], so t + 0.5 is exact, r = floor(t + 0.5) rounds half up, and a
      // tie (r - t === 0.5) with r odd steps back to the even neighbour.
      const t = Math.fround(u * 255.0);
      const ti = (t + 0.5) | 0;
      const index = (ti - ((ti - t === 0.5 ? 1 : 0) & ti)) << 2;
      // opacity at map_to_rgba's alpha 1: the strength itself (1 * s is exact in float32)
      let strength = u;
      if (symmetric) {
        const d = Math.fround(u - 0.5);
        strength = Math.fround((d < 0 ? -d : d) * 2.0);
      }
      // alpha channel: np.round(float32(lut alpha * opacity)), rounded as above
      const s = Math.fround(lut[index + 3] * strength);
      const si = (s + 0.5) | 0;
      const a255 = si - ((si - s === 0.5 ? 1 : 0) & si);
      if (a255 === 0) { // a = 0: (1 - 0) * photo + 0 * colour is the photo itself
        out[o] = photo[p];
        out[o + 1] = photo[p + 1];
        out[o + 2] = photo[p + 2];
      } else {
        const a = blendWeight[a255];
        const b = 1.0 - a;
        // Uint8ClampedArray stores round half-to-even and clamp: np.clip(np.round(x), 0, 255).
        out[o] = b * photo[p] + a * lut[index];
        out[o + 1] = b * photo[p + 1] + a * lut[index + 1];
        out[o + 2] = b * photo[p + 2] + a * lut[index + 2];
      }
      out[o + 3] = 255;
    }
  }
  return out;
}
