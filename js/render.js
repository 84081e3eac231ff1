// render.js — the numerics of the browser hover layer: pure functions, no DOM, no imports.
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

const renderSides = ["query", "reference"];
const renderReadings = ["contribution", "correspondence"];
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

function renderCheckSize(size, label) {
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

function renderCheckLength(values, length, label) {
  if (values == null || values.length !== length) {
    const got = values == null ? String(values) : `${values.length} values`;
    throw new Error(`${label}: expected ${length} values, got ${got}`);
  }
}

function renderCheckChoice(value, choices, label) {
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

/**
 * PairExplanation.pixel_to_cell: image pixel (row, col) -> fractional cell (u, v) of a grid,
 * half-pixel centres, clamped to the outer cell centres.
 * @returns {[number, number]}
 */
export function pixelToCell(row, col, imageSize, grid) {
  const [rows, cols] = imageSize;
  const [h, w] = grid;
  const u = ((row + 0.5) * h) / rows - 0.5;
  const v = ((col + 0.5) * w) / cols - 0.5;
  return [Math.min(Math.max(u, 0.0), h - 1.0), Math.min(Math.max(v, 0.0), w - 1.0)];
}

/**
 * figure.cell_centre_pixels: cell (row, col) of a grid -> image pixel of its centre (inverse of
 * the half-pixel rule).
 * @returns {[number, number]}
 */
export function cellCentrePixel(cellRow, cellCol, grid, imageSize) {
  const [h, w] = grid;
  const [rows, cols] = imageSize;
  return [((cellRow + 0.5) * rows) / h - 0.5, ((cellCol + 0.5) * cols) / w - 0.5];
}

/**
 * _canvas.pixel_to_canvas: image pixel (row, col) -> canvas position (y, x), canvas edges at 0
 * and its size, pixel centres at integers.
 * @returns {[number, number]}
 */
export function pixelToCanvas(row, col, canvasSize, imageSize) {
  const [canvasRows, canvasCols] = canvasSize;
  const [rows, cols] = imageSize;
  return [((row + 0.5) * canvasRows) / rows, ((col + 0.5) * canvasCols) / cols];
}

/**
 * _canvas.event_to_pixel for a position already in canvas pixels (the box is the canvas): canvas
 * (y, x) -> image pixel (row, col), clamped to the half-pixel margin; null outside the canvas or
 * for non-finite input.
 * @returns {[number, number] | null}
 */
export function canvasToPixel(y, x, canvasSize, imageSize) {
  const [canvasRows, canvasCols] = canvasSize;
  const [rows, cols] = imageSize;
  if (!Number.isFinite(y) || !Number.isFinite(x)) return null;
  if (!(x >= 0.0 && x <= canvasCols && y >= 0.0 && y <= canvasRows)) return null;
  const row = Math.min(Math.max((y * rows) / canvasRows - 0.5, -0.5), rows - 0.5);
  const col = Math.min(Math.max((x * cols) / canvasCols - 0.5, -0.5), cols - 0.5);
  return [row, col];
}

function renderGridOf(point, side, label) {
  const grid = point && point.grids ? point.grids[side] : undefined;
  return renderCheckSize(grid === undefined ? null : Array.from(grid), label);
}

/**
 * PointToPoint.row: the map over the other image's grid for a fractional cell (cellRow, cellCol)
 * of `source`, bilinear in the four neighbouring cells (clamped). Matrix encoding: the same blend
 * of four rows (query source) or columns (reference source) of the Nq x Nr matrix. Factors: the
 * four factor rows are blended first, then one product with every other-side row, times scale —
 * as Python, since D is linear in each factor.
 * @param {object} point decoded payload.point
 * @param {"query"|"reference"} source
 * @param {"contribution"|"correspondence"} reading
 * @returns {Float32Array} over point.grids[other side]
 */
export function pointRow(point, source, cellRow, cellCol, reading) {
  renderCheckChoice(source, renderSides, "pointRow source");
  renderCheckChoice(reading, renderReadings, "pointRow reading");
  const other = source === "query" ? "reference" : "query";
  const [h, w] = renderGridOf(point, source, `pointRow grids.${source}`);
  const [oh, ow] = renderGridOf(point, other, `pointRow grids.${other}`);
  const nOther = oh * ow;

  const r = Math.min(Math.max(cellRow, 0.0), h - 1.0);
  const c = Math.min(Math.max(cellCol, 0.0), w - 1.0);
  const r0 = Math.floor(r);
  const c0 = Math.floor(c);
  const r1 = Math.min(r0 + 1, h - 1);
  const c1 = Math.min(c0 + 1, w - 1);
  const fr = r - r0;
  const fc = c - c0;
  // Python's weights: (1 - fr) * (1 - fc) etc., each a float64 scalar.
  const w00 = (1 - fr) * (1 - fc);
  const w01 = (1 - fr) * fc;
  const w10 = fr * (1 - fc);
  const w11 = fr * fc;
  const i00 = r0 * w + c0;
  const i01 = r0 * w + c1;
  const i10 = r1 * w + c0;
  const i11 = r1 * w + c1;
  const out = new Float32Array(nOther);

  if (point.encoding === "matrix") {
    const m = point.matrix && point.matrix[reading];
    const nq = source === "query" ? h * w : nOther;
    const nr = source === "query" ? nOther : h * w;
    renderCheckLength(m, nq * nr, `pointRow matrix.${reading}`);
    if (source === "query") {
      // a query cell's map is a row of D
      const a = i00 * nr;
      const b = i01 * nr;
      const d = i10 * nr;
      const e = i11 * nr;
      for (let j = 0; j < nOther; j++) {
        out[j] = w00 * m[a + j] + w01 * m[b + j] + w10 * m[d + j] + w11 * m[e + j];
      }
    } else {
      // a reference cell's map is a column of D
      for (let j = 0; j < nOther; j++) {
        const base = j * nr;
        out[j] = w00 * m[base + i00] + w01 * m[base + i01] + w10 * m[base + i10] + w11 * m[base + i11];
      }
    }
    return out;
  }
  if (point.encoding !== "factors") {
    throw new Error(`pointRow encoding: expected "matrix" or "factors", got ${JSON.stringify(point.encoding)}`);
  }
  const f = point.factors && point.factors[reading];
  if (!f) throw new Error(`pointRow factors.${reading}: missing`);
  const k = f.width;
  const mine = f[source];
  const theirs = f[other];
  renderCheckLength(mine, h * w * k, `pointRow factors.${reading}.${source}`);
  renderCheckLength(theirs, nOther * k, `pointRow factors.${reading}.${other}`);
  const vec = new Float64Array(k);
  const a = i00 * k;
  const b = i01 * k;
  const d = i10 * k;
  const e = i11 * k;
  for (let t = 0; t < k; t++) {
    vec[t] = w00 * mine[a + t] + w01 * mine[b + t] + w10 * mine[d + t] + w11 * mine[e + t];
  }
  const scale = f.scale;
  for (let j = 0; j < nOther; j++) {
    const base = j * k;
    let sum = 0.0;
    for (let t = 0; t < k; t++) sum += theirs[base + t] * vec[t];
    out[j] = scale * sum; // (scale * (other @ vec)).astype(float32)
  }
  return out;
}

/**
 * PairExplanation.from_query / from_reference: the map for image pixel (row, col) of `source`
 * (imageSize = that image's [rows, cols]): pixelToCell, then pointRow.
 * @returns {{values: Float32Array, grid: [number, number]}} grid = the other side's grid
 */
export function pointMap(point, source, row, col, imageSize, reading) {
  renderCheckChoice(source, renderSides, "pointMap source");
  const other = source === "query" ? "reference" : "query";
  const grid = renderGridOf(point, source, `pointMap grids.${source}`);
  const [u, v] = pixelToCell(row, col, imageSize, grid);
  return { values: pointRow(point, source, u, v, reading), grid: renderGridOf(point, other, `pointMap grids.${other}`) };
}

/**
 * HoverLogic.peak_of's cell: [row, col] of the first maximum (numpy argmax; a NaN wins, as there).
 * @returns {[number, number]}
 */
export function peakCell(values, grid) {
  const [, w] = grid;
  if (values.length === 0) throw new Error("peakCell values: expected a non-empty map, got no values");
  let best = 0;
  let top = values[0];
  if (!Number.isNaN(top)) {
    for (let i = 1; i < values.length; i++) {
      const v = values[i];
      if (Number.isNaN(v)) { best = i; break; }
      if (v > top) { top = v; best = i; }
    }
  }
  return [Math.floor(best / w), best % w];
}

// numpy's pairwise summation (float64 add.reduce): plain loop below 8 values, 8 accumulators up to
// 128, halves (rounded to a multiple of 8) above.
function renderPairwiseSum(values, start, n) {
  if (n < 8) {
    let res = 0.0;
    for (let i = 0; i < n; i++) res += values[start + i];
    return res;
  }
  if (n <= 128) {
    const r = [0, 0, 0, 0, 0, 0, 0, 0];
    for (let j = 0; j < 8; j++) r[j] = values[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] += values[start + i + j];
    }
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += values[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return renderPairwiseSum(values, start, n2) + renderPairwiseSum(values, start + n2, n - n2);
}

/**
 * np.sum(values, dtype=np.float64): pairwise summation as numpy does it, over the blocks of 8192
 * values numpy's casting buffer hands to it (so the hover's "adds to the score" number matches).
 * @returns {number}
 */
export function sumValues(values) {
  const block = 8192;
  let total = 0.0;
  for (let start = 0; start < values.length; start += block) {
    total += renderPairwiseSum(values, start, Math.min(block, values.length - start));
  }
  return total;
}

/**
 * HoverLogic.scale(values, point=True): the colour scale of one point map. "contribution":
 * symmetric over the map's largest |value|; "correspondence": the map's own min..max.
 * cmap: the override, else readings[reading].cmap; meaning: readings[reading].meaning.
 * @returns {{cmap: string, mode: string, lo: number, hi: number, meaning: string}}
 */
export function pointScale(values, reading, readings, cmap = null) {
  renderCheckChoice(reading, renderReadings, "pointScale reading");
  const style = readings && readings[reading];
  if (!style) throw new Error(`pointScale readings.${reading}: missing`);
  const mode = reading === "correspondence" ? "minmax" : "symmetric";
  const [lo, hi] = normalizeLimits(values, mode);
  return { cmap: cmap || style.cmap, mode, lo, hi, meaning: style.meaning };
}
