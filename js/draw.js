// Drawing pieces shared by the standalone pair viewer and the notebook hover layer (pair_view.js,
// hover_layer.js): markers as simviz_widgets/widgets/markers.py draws them, the "n/a" label, photo
// decoding, composites of a photo and a map, the colour bar, and Python-style number formatting.
// Top-level names are prefixed (draw*, view*, VIEW_*): assets.bundle() joins every js/ module into
// one scope.

import { blendOverPhoto } from "./render.js";
import { cellCentrePixel, peakCell, pixelToCanvas } from "./point_map.js";

/** Pin colours and their number, as simviz_widgets/widgets/state.py (render/figure.py POINT_COLOURS). */
export const VIEW_PIN_COLOURS = ["#00e5ff", "#76ff03", "#ff40ff", "#ffffff", "#ffab00", "#b388ff"];
export const VIEW_MAX_PINS = VIEW_PIN_COLOURS.length;
export const VIEW_SIDES = ["query", "reference"];
export const VIEW_FONT = '13px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

export function viewOtherSide(side) {
  return side === "query" ? "reference" : "query";
}

/** Python's format(x, f".{digits}g") (plus=True: "+g"). */
export function viewFormatG(x, digits, plus = false) {
  let text;
  if (!Number.isFinite(x)) {
    text = Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  } else if (x === 0) {
    text = "0";
  } else {
    const [mantissa, exponentText] = x.toExponential(digits - 1).split("e");
    const exponent = Number(exponentText);
    if (exponent < -4 || exponent >= digits) {
      const trimmed = mantissa.includes(".") ? mantissa.replace(/0+$/, "").replace(/\.$/, "") : mantissa;
      text = `${trimmed}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
    } else {
      text = x.toFixed(Math.max(0, digits - 1 - exponent));
      if (text.includes(".")) text = text.replace(/0+$/, "").replace(/\.$/, "");
    }
  }
  return plus && !text.startsWith("-") ? `+${text}` : text;
}

/** Python's format(x, f".{digits}e"): two-digit exponent. */
export function viewFormatE(x, digits) {
  const [mantissa, exponentText] = x.toExponential(digits).split("e");
  const exponent = Number(exponentText);
  return `${mantissa}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
}

/** A colour-bar limit: 3 significant digits and a real minus sign (colorbar.py format_limit). */
export function viewFormatLimit(x) {
  return viewFormatG(x, 3).replace("-", "\u2212");
}

/** The RGBA pixels (Uint8ClampedArray, canvas rows x cols) of a PNG given as bytes, exactly as
 * stored (no colour management, no premultiplication). */
export async function drawDecodePhoto(bytes, [rows, cols]) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }),
    { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0, cols, rows);
  bitmap.close();
  return context.getImageData(0, 0, cols, rows).data;
}

/** ImageData of ``photo`` (RGBA) with ``values`` (a (h, w) map) blended over it on ``scale``:
 * value-following opacity up to ``alpha``, opaque result (Python's overlay(..., alpha_from_value=True)).
 * ``reuse``: an ImageData of this size from an earlier call to fill again (no allocation per hover). */
export function drawComposite(photo, [rows, cols], values, grid, scale, lut, alpha, reuse = null) {
  const fits = reuse && reuse.width === cols && reuse.height === rows;
  const rgba = blendOverPhoto(photo, 4, [rows, cols], values, grid,
    { lut, mode: scale.mode, lo: scale.lo, hi: scale.hi, alpha }, fits ? reuse.data : null);
  return fits ? reuse : new ImageData(rgba, cols, rows);
}

/** ImageData of the photo alone (a copy: an ImageData keeps its buffer). */
export function drawPhotoImage(photo, [rows, cols]) {
  return new ImageData(new Uint8ClampedArray(photo), cols, rows);
}

// -- markers (markers.py): positions are canvas (y, x) --------------------------------------------

/** Stroke the current path twice: a black outline, then ``colour`` inside it (legible on any photo). */
function drawOutlined(context, outline, width, colour) {
  context.lineWidth = outline;
  context.strokeStyle = "black";
  context.stroke();
  context.lineWidth = width;
  context.strokeStyle = colour;
  context.stroke();
}

function drawRing(context, y, x, radius, colour, width) {
  context.beginPath();
  context.arc(x, y, radius, 0, 2 * Math.PI);
  drawOutlined(context, width + 2, width, colour);
}

/** A filled dot with a black edge: a pinned point. */
export function drawPin(context, y, x, colour, radius = 6) {
  context.beginPath();
  context.arc(x, y, radius + 1.5, 0, 2 * Math.PI);
  context.fillStyle = "black";
  context.fill();
  context.beginPath();
  context.arc(x, y, radius, 0, 2 * Math.PI);
  context.fillStyle = colour;
  context.fill();
}

/** A ring: where a pin on the other image matches best. */
export function drawMatch(context, y, x, colour, radius = 9) {
  drawRing(context, y, x, radius, colour, 2.5);
}

/** The hovered point: a white cross with a black outline and a gap at the centre. */
export function drawCrosshair(context, y, x, radius = 8) {
  context.beginPath();
  for (const [dy, dx] of [[0, -1], [0, 1], [-1, 0], [1, 0]]) {
    context.moveTo(x + dx * 0.4 * radius, y + dy * 0.4 * radius);
    context.lineTo(x + dx * 2 * radius, y + dy * 2 * radius);
  }
  context.lineCap = "butt";
  drawOutlined(context, 4, 2, "white");
}

/** A diamond, white inside a black outline: where the hovered point's map peaks. */
export function drawPeak(context, y, x, radius = 8) {
  context.beginPath();
  context.moveTo(x, y - radius);
  context.lineTo(x + radius, y);
  context.lineTo(x, y + radius);
  context.lineTo(x - radius, y);
  context.closePath();
  context.lineJoin = "miter";
  drawOutlined(context, 5, 2.5, "white");
}

/** ``text`` broken at spaces into lines no wider than ``width`` (measured in the context's font). */
function drawWrap(context, text, width) {
  const lines = [];
  for (const word of String(text).split(/\s+/).filter(Boolean)) {
    const last = lines.length ? `${lines[lines.length - 1]} ${word}` : word;
    if (lines.length && context.measureText(last).width <= width) lines[lines.length - 1] = last;
    else lines.push(word);
  }
  return lines.length ? lines : [""];
}

/** White text on a dark box across the middle of the canvas (e.g. "n/a: rise gives no map ..."). */
export function drawLabel(context, text, [rows, cols], fontPx = 13) {
  context.font = `${fontPx}px system-ui, sans-serif`;
  const lines = drawWrap(context, text, cols - 28);
  const lineHeight = fontPx + 5;
  const boxHeight = lineHeight * lines.length + 12;
  const top = Math.max(4, Math.round((rows - boxHeight) / 2));
  context.fillStyle = "rgba(30, 30, 30, 0.82)";
  context.fillRect(6, top, cols - 12, boxHeight);
  context.fillStyle = "white";
  context.textAlign = "center";
  context.textBaseline = "middle";
  lines.forEach((line, k) => context.fillText(line, cols / 2, top + 6 + lineHeight * (k + 0.5)));
}

/** Pins of ``side`` as dots, pins of the other image as rings at their best match on ``side``. */
export function drawPins(context, side, pins, canvasSize, imageSize) {
  for (const pin of pins) {
    if (pin.source === side) {
      drawPin(context, ...pixelToCanvas(pin.row, pin.col, canvasSize, imageSize), pin.colour);
    } else if (pin.match) {
      drawMatch(context, ...pixelToCanvas(pin.match[0], pin.match[1], canvasSize, imageSize), pin.colour);
    }
  }
}

/** Display pixel (row, col) on the map's side where a point map peaks (centre of its largest cell). */
export function viewPeakPixel(values, grid, imageSize) {
  const [r, c] = peakCell(values, grid);
  return cellCentrePixel(r, c, grid, imageSize);
}

// -- colour bar -------------------------------------------------------------------------------------

/** Paint a colour bar: the LUT as a gradient ``barWidth`` CSS px wide, with tick labels lo, 0 (when
 * inside the range and clear of the others) and hi below it, kept inside the canvas. */
export function drawColourBar(canvas, lut, scale, barWidth) {
  const ratio = window.devicePixelRatio || 1;
  const margin = 1;
  const height = 34;
  const width = barWidth + 2 * margin;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);
  const strip = document.createElement("canvas");
  strip.width = 256;
  strip.height = 1;
  strip.getContext("2d").putImageData(new ImageData(viewOpaqueLut(lut), 256, 1), 0, 0);
  context.imageSmoothingEnabled = true;
  context.drawImage(strip, 0, 0, 256, 1, margin, 0, barWidth, 14);
  context.strokeStyle = "#777";
  context.lineWidth = 1;
  context.strokeRect(margin - 0.5, -0.5 + 1, barWidth + 1, 14);
  context.font = "12px system-ui, sans-serif";
  context.textBaseline = "top";
  context.fillStyle = "#222";
  const span = scale.hi - scale.lo;
  const at = (value) => margin + (span > 0 ? (value - scale.lo) / span : 0.5) * barWidth;
  const ticks = [[scale.lo, viewFormatLimit(scale.lo)], [scale.hi, viewFormatLimit(scale.hi)]];
  if (span > 0 && scale.lo < 0 && scale.hi > 0) ticks.push([0, "0"]);
  const boxes = [];
  for (const [value, text] of ticks) {
    const x = at(value);
    const textWidth = context.measureText(text).width;
    const left = Math.min(Math.max(x - textWidth / 2, 0), width - textWidth);
    if (boxes.some(([l, r]) => left < r + 6 && left + textWidth > l - 6)) continue;  // would overlap
    boxes.push([left, left + textWidth]);
    context.fillRect(Math.round(x) - 0.5, 15, 1, 4);
    context.fillText(text, left, 20);
  }
}

function viewOpaqueLut(lut) {
  const out = new Uint8ClampedArray(lut);
  for (let k = 3; k < out.length; k += 4) out[k] = 255;
  return out;
}
