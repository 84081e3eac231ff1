// point_map.js — pixel <-> cell <-> canvas geometry, the rows of D for both readings and both
// directions, peaks, sums and a point map's colour scale: pure functions, no DOM. Each mirrors
// Python (PairExplanation.pixel_to_cell, PointToPoint.row, render.figure.cell_centre_pixels,
// widgets._canvas, web.scales.point_scale) as render.js explains.
//
// Top-level names are unique across js/ (the files get concatenated): private helpers start with
// `point`.

import { renderCheckSize, renderCheckLength, renderCheckChoice, renderSides, renderReadings, normalizeLimits } from "./render.js";

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

function pointGridOf(point, side, label) {
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
  const [h, w] = pointGridOf(point, source, `pointRow grids.${source}`);
  const [oh, ow] = pointGridOf(point, other, `pointRow grids.${other}`);
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
  const weights = [w00, w01, w10, w11];
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
    if (source === "query") {  // a query cell's map is a row of D
      pointMixRows(out, m, [i00 * nr, i01 * nr, i10 * nr, i11 * nr], weights, nOther);
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
  const vec = pointMixRows(new Float64Array(k), mine, [i00 * k, i01 * k, i10 * k, i11 * k], weights, k);
  const scale = f.scale;
  for (let j = 0; j < nOther; j++) {
    const base = j * k;
    let sum = 0.0;
    for (let t = 0; t < k; t++) sum += theirs[base + t] * vec[t];
    out[j] = scale * sum; // (scale * (other @ vec)).astype(float32)
  }
  return out;
}

/** out[j] = w00 * src[o00 + j] + w01 * src[o01 + j] + w10 * src[o10 + j] + w11 * src[o11 + j] for j < n:
 * the bilinear mix of four neighbouring cells' rows (in Python's order of terms). */
function pointMixRows(out, src, [a, b, d, e], [w00, w01, w10, w11], n) {
  for (let j = 0; j < n; j++) out[j] = w00 * src[a + j] + w01 * src[b + j] + w10 * src[d + j] + w11 * src[e + j];
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
  const grid = pointGridOf(point, source, `pointMap grids.${source}`);
  const [u, v] = pixelToCell(row, col, imageSize, grid);
  return { values: pointRow(point, source, u, v, reading), grid: pointGridOf(point, other, `pointMap grids.${other}`) };
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
function pointPairwiseSum(values, start, n) {
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
  return pointPairwiseSum(values, start, n2) + pointPairwiseSum(values, start + n2, n - n2);
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
    total += pointPairwiseSum(values, start, Math.min(block, values.length - start));
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
  const mode = style.mode;  // "symmetric" (contribution) or "minmax" (correspondence): web.scales
  const [lo, hi] = normalizeLimits(values, mode);
  return { cmap: cmap || style.cmap, mode, lo, hi, meaning: style.meaning };
}
