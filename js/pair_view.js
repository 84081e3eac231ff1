// The pair viewer in the browser: mountPairView(el, payload) builds the standalone viewer (the page
// of simviz_widgets/web/page.py); the default export is the anywidget view of the notebook pair
// viewer's hover layer (hover_layer.js). Hover is painted synchronously in the mousemove handler:
// one row of D, upsampled and blended over the other photo (render.js), then the markers.

import { roundHalfEven } from "./render.js";
import { canvasToPixel, pixelToCanvas, pointMap, pointScale, sumValues } from "./point_map.js";
import { decodePayload } from "./payload.js";
import { VIEW_FONT, VIEW_MAX_PINS, VIEW_PIN_COLOURS, VIEW_SIDES, drawColourBar, drawComposite, drawCrosshair, drawDecodePhoto, drawLabel, drawPeak, drawPhotoImage, drawPins, viewFormatE, viewFormatG, viewOtherSide, viewPeakPixel } from "./draw.js";
import { renderHoverLayer } from "./hover_layer.js";

const VIEW_CSS = `
.simviz-pair { font: ${VIEW_FONT}; line-height: 1.45; color: #1d1d1d; background: #fff; padding: 12px;
  box-sizing: border-box; }
.simviz-pair * { box-sizing: border-box; }
.simviz-pair .sv-title { min-height: 20px; margin-bottom: 6px; }
.simviz-pair .sv-controls { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 18px; min-height: 28px;
  margin-bottom: 8px; }
.simviz-pair .sv-controls label { cursor: pointer; white-space: nowrap; }
.simviz-pair .sv-controls select, .simviz-pair button { font: inherit; }
.simviz-pair .sv-controls input[type=range] { width: 110px; vertical-align: middle; }
.simviz-pair .sv-images { display: flex; gap: 16px; align-items: flex-start; }
.simviz-pair .sv-figure { margin: 0; }
.simviz-pair .sv-caption { height: 20px; font-weight: 600; }
.simviz-pair canvas.sv-image { display: block; cursor: crosshair; }
.simviz-pair .sv-status { height: 40px; margin-top: 6px; color: #1d1d1d; overflow: hidden; }
.simviz-pair .sv-meaning { min-height: 38px; color: #333; }
.simviz-pair .sv-bar { display: flex; align-items: flex-start; gap: 8px; height: 36px; }
.simviz-pair .sv-cmap-name { color: #555; font-size: 12px; }
.simviz-pair .sv-pins { margin-top: 6px; }
.simviz-pair .sv-pins-head { display: flex; align-items: center; gap: 12px; height: 26px; }
.simviz-pair .sv-pin-list { min-height: ${20 * VIEW_MAX_PINS}px; }
.simviz-pair .sv-pin-line { height: 20px; white-space: nowrap; }
.simviz-pair .sv-swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #000;
  vertical-align: middle; margin-right: 4px; }
.simviz-pair .sv-hint { color: #666; font-style: italic; }
`;
const VIEW_BAR_WIDTH = 300;

function viewElement(tag, className, parent, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

/** The title line: metric similarity score, method, completeness error when given. */
function viewTitle(node, p) {
  node.replaceChildren();
  viewElement("b", "", node, `${p.metric} similarity`);
  node.append(` ${p.score.toFixed(4)} \u00b7 method `);
  viewElement("code", "", node, p.method);
  if (p.completeness_error !== null && p.completeness_error !== undefined) {
    node.append(` \u00b7 completeness error ${viewFormatE(p.completeness_error, 1)}`);
  }
}

/** Build the standalone viewer of ``raw`` (a payload as js/README.md describes it, binary fields in
 * any form decodePayload takes) into ``el``; returns the controller (also ``el.simvizView``). */
export function mountPairView(el, raw) {
  const p = decodePayload(raw);
  const point = p.point || null;
  const state = {
    reading: p.reading || "contribution", cmap: p.cmap ?? null, alpha: p.alpha,
    showOverall: p.show_overall !== false, showPeak: p.show_peak !== false,
    hovered: null, peak: null, status: "", scale: null, pins: [],
    stats: { hovers: 0, totalMs: 0, lastMs: 0, maxMs: 0 },
  };
  el.replaceChildren();
  viewElement("style", "", el, VIEW_CSS);
  const root = viewElement("div", "simviz-pair", el);
  viewTitle(viewElement("div", "sv-title", root), p);

  // -- controls ------------------------------------------------------------------------------------
  const controls = viewElement("div", "sv-controls", root);
  const readingBox = viewElement("span", "sv-reading", controls);
  viewElement("span", "", readingBox, "reading: ");
  const readingInputs = {};
  for (const reading of ["contribution", "correspondence"]) {
    const label = viewElement("label", "", readingBox);
    const input = viewElement("input", "", label);
    Object.assign(input, { type: "radio", name: `sv-reading-${Math.random().toString(36).slice(2)}`, value: reading });
    input.addEventListener("change", () => input.checked && controller.setReading(reading));
    label.append(` ${reading} `);
    readingInputs[reading] = input;
  }
  if (!point) readingBox.style.display = "none";
  const cmapLabel = viewElement("label", "", controls, "colours ");
  const cmapSelect = viewElement("select", "sv-cmap", cmapLabel);
  for (const name of ["default", ...Object.keys(p.luts)]) viewElement("option", "", cmapSelect, name).value = name;
  cmapSelect.addEventListener("change", () => controller.setCmap(cmapSelect.value === "default" ? null : cmapSelect.value));
  const alphaLabel = viewElement("label", "", controls, "opacity ");
  const alphaInput = viewElement("input", "sv-alpha", alphaLabel);
  Object.assign(alphaInput, { type: "range", min: "0", max: "1", step: "0.05" });
  const alphaText = viewElement("span", "", alphaLabel);
  alphaInput.addEventListener("input", () => controller.setAlpha(Number(alphaInput.value)));

  // -- images ------------------------------------------------------------------------------------
  const images = viewElement("div", "sv-images", root);
  const sides = {};
  for (const side of VIEW_SIDES) {
    const info = p.sides[side];
    const figure = viewElement("figure", "sv-figure", images);
    viewElement("div", "sv-caption", figure, side);
    const canvas = viewElement("canvas", `sv-image sv-${side}`, figure);
    canvas.height = info.canvas[0];
    canvas.width = info.canvas[1];
    sides[side] = { info, canvas, context: canvas.getContext("2d"), photo: null, rest: null, hover: null };
    canvas.addEventListener("mousemove", (event) => {
      const pixel = viewEventPixel(event, canvas, info);
      if (pixel) controller.hover(side, pixel[0], pixel[1]);
      else if (state.hovered) controller.leave();
    });
    canvas.addEventListener("mouseleave", () => controller.leave());
    canvas.addEventListener("click", (event) => {
      const pixel = viewEventPixel(event, canvas, info);
      if (pixel) controller.pin(side, pixel[0], pixel[1]);
    });
  }
  const status = viewElement("div", "sv-status", root);

  // -- colour bar and pins -----------------------------------------------------------------------
  const bar = viewElement("div", "sv-colorbar", root);
  const meaning = viewElement("div", "sv-meaning", bar);
  const barRow = viewElement("div", "sv-bar", bar);
  const barCanvas = viewElement("canvas", "sv-bar-canvas", barRow);
  const cmapName = viewElement("span", "sv-cmap-name", barRow);
  const pinsBox = viewElement("div", "sv-pins", root);
  const pinsHead = viewElement("div", "sv-pins-head", pinsBox);
  viewElement("b", "", pinsHead, "pins");
  const clearButton = viewElement("button", "sv-clear", pinsHead, "clear pins");
  clearButton.type = "button";
  clearButton.addEventListener("click", () => controller.clearPins());
  const pinList = viewElement("div", "sv-pin-list", pinsBox);

  // -- logic ---------------------------------------------------------------------------------------
  const lutOf = (scale) => p.luts[scale.cmap] || p.luts[p.overall.cmap];
  const overallScale = () => ({ ...p.overall, cmap: state.cmap ?? p.overall.cmap });
  const pointMapOf = (side, row, col, reading) => pointMap(point, side, row, col, p.sides[side].image, reading);
  const inside = (side, row, col) => {
    const [rows, cols] = p.sides[side].image;
    return Number.isFinite(row) && Number.isFinite(col) && row >= -0.5 && row <= rows - 0.5 && col >= -0.5
      && col <= cols - 0.5;
  };
  const checkSide = (side) => {
    if (!VIEW_SIDES.includes(side)) throw new Error(`side=${JSON.stringify(side)} must be 'query' or 'reference'`);
    return side;
  };

  /** A pin: its best match on the other image (point maps only) and what it adds to the score —
   * the sum of its contribution row, or the overall map's value there when the maps split the
   * score; for other methods the map's value (a relevance, no share), null without a map. */
  function pinEntry(source, row, col, colour) {
    const pin = { source, row, col, colour, match: null, contribution: null, share: null, relevance: false };
    const map = p.sides[source].map;
    if (point) {
      pin.contribution = sumValues(pointMapOf(source, row, col, "contribution").values);
      const { values, grid } = pointMapOf(source, row, col, state.reading);
      pin.match = viewPeakPixel(values, grid, p.sides[viewOtherSide(source)].image);
    } else if (map && !p.sides[source].missing) {
      pin.contribution = viewValueAtPixel(map.values, map.shape, p.sides[source].image, row, col);
      pin.relevance = !p.sums_to_score;
    }
    // A share of the score only where the maps split it (a decomposition), as HoverLogic.pin_lines.
    if (pin.contribution !== null && p.sums_to_score && Math.abs(p.score) > 1e-12) {
      pin.share = (100 * pin.contribution) / p.score;
    }
    return pin;
  }

  function restImage(side) {
    const s = sides[side];
    if (!s.rest) {
      const map = s.info.map;
      if (state.showOverall && map && !s.info.missing) {
        const scale = overallScale();
        s.rest = drawComposite(s.photo, s.info.canvas, map.values, map.shape, scale, lutOf(scale), state.alpha);
      } else {
        s.rest = drawPhotoImage(s.photo, s.info.canvas);
      }
    }
    return s.rest;
  }

  function paintRest(side, crosshair = null) {
    const s = sides[side];
    if (!s.photo) return;
    s.context.putImageData(restImage(side), 0, 0);
    if (s.info.missing) drawLabel(s.context, s.info.missing, s.info.canvas);
    drawPins(s.context, side, state.pins, s.info.canvas, s.info.image);
    if (crosshair) drawCrosshair(s.context, ...pixelToCanvas(crosshair[0], crosshair[1], s.info.canvas, s.info.image));
  }

  function showScale(scale) {
    state.scale = scale;
    meaning.textContent = scale.meaning;
    cmapName.textContent = `(${scale.cmap})`;
    drawColourBar(barCanvas, lutOf(scale), scale, VIEW_BAR_WIDTH);
  }

  function paint() {
    const hovered = state.hovered;
    if (!hovered) {
      for (const side of VIEW_SIDES) paintRest(side);
      state.peak = null;
      state.status = "";
      status.replaceChildren(viewElement("span", "sv-hint", null, point
        ? "hover a point of either image to see what it matches in the other; click to pin it"
        : `${p.point_note || `method '${p.method}' gives overall maps only`}; click a point to pin it`));
      showScale(overallScale());
      return;
    }
    const [side, row, col] = hovered;
    const other = viewOtherSide(side);
    paintRest(side, [row, col]);
    let text = `${side} pixel (${roundHalfEven(row).toFixed(0)}, ${roundHalfEven(col).toFixed(0)})`;
    if (!point) {
      paintRest(other);
      state.peak = null;
      text += ` \u00b7 ${p.point_note || `method '${p.method}' gives overall maps only`}`;
      showScale(overallScale());
    } else {
      const { values, grid } = pointMapOf(side, row, col, state.reading);
      const scale = pointScale(values, state.reading, point.readings, state.cmap);
      const o = sides[other];
      if (o.photo) {
        o.hover = drawComposite(o.photo, o.info.canvas, values, grid, scale, lutOf(scale), state.alpha, o.hover);
        o.context.putImageData(o.hover, 0, 0);
      }
      const peak = viewPeakPixel(values, grid, o.info.image);
      state.peak = [other, peak[0], peak[1]];
      if (state.showPeak && o.photo) drawPeak(o.context, ...pixelToCanvas(peak[0], peak[1], o.info.canvas, o.info.image));
      if (o.photo) drawPins(o.context, other, state.pins, o.info.canvas, o.info.image);
      if (state.reading === "contribution") text += ` \u00b7 adds ${viewFormatG(sumValues(values), 4, true)} to the score`;
      text += ` \u00b7 best match in the ${other} at (${roundHalfEven(peak[0]).toFixed(0)}, `
        + `${roundHalfEven(peak[1]).toFixed(0)})${state.showPeak ? " (marked \u25c7)" : ""}`;
      showScale(scale);
    }
    state.status = text;
    status.textContent = text;
  }

  function showPins() {
    pinList.replaceChildren();
    clearButton.disabled = state.pins.length === 0;
    if (!state.pins.length) {
      viewElement("span", "sv-hint", pinList, `click a point to pin it (up to ${VIEW_MAX_PINS})`);
      return;
    }
    for (const pin of state.pins) {
      const line = viewElement("div", "sv-pin-line", pinList);
      viewElement("span", "sv-swatch", line).style.background = pin.colour;
      line.append(`${pin.source} (${roundHalfEven(pin.row).toFixed(0)}, ${roundHalfEven(pin.col).toFixed(0)}): `);
      if (pin.contribution === null) {
        line.append(`no ${pin.source} map`);
        continue;
      }
      if (pin.relevance) line.append("map value ");
      viewElement("b", "", line, `${pin.contribution >= 0 ? "+" : ""}${pin.contribution.toFixed(4)}`);
      if (pin.share !== null) line.append(` (${pin.share.toFixed(1)} % of the score)`);
    }
  }

  function syncControls() {
    for (const [reading, input] of Object.entries(readingInputs)) input.checked = reading === state.reading;
    cmapSelect.value = state.cmap ?? "default";
    alphaInput.value = String(state.alpha);
    alphaText.textContent = ` ${state.alpha.toFixed(2)}`;
  }

  const refreshRest = () => { for (const side of VIEW_SIDES) sides[side].rest = null; };
  const controller = {
    state,
    hover(side, row, col) {
      const start = performance.now();
      checkSide(side);
      if (!inside(side, row, col)) return;
      state.hovered = [side, row, col];
      paint();
      const ms = performance.now() - start;
      Object.assign(state.stats, { hovers: state.stats.hovers + 1, totalMs: state.stats.totalMs + ms, lastMs: ms,
        maxMs: Math.max(state.stats.maxMs, ms) });
    },
    leave() {
      if (!state.hovered) return;
      state.hovered = null;
      paint();
    },
    pin(side, row, col) {
      checkSide(side);
      if (!inside(side, row, col)) return null;
      const kept = state.pins.slice(-(VIEW_MAX_PINS - 1));
      const used = new Set(kept.map((pin) => pin.colour));
      const pin = pinEntry(side, row, col, VIEW_PIN_COLOURS.find((colour) => !used.has(colour)));
      state.pins = [...kept, pin];
      showPins();
      paint();
      return pin;
    },
    clearPins() {
      state.pins = [];
      showPins();
      paint();
    },
    setReading(reading) {
      if (!["contribution", "correspondence"].includes(reading)) {
        throw new Error(`reading=${JSON.stringify(reading)} must be 'contribution' or 'correspondence'`);
      }
      state.reading = reading;
      state.pins = state.pins.map((pin) => pinEntry(pin.source, pin.row, pin.col, pin.colour));
      syncControls();
      showPins();
      paint();
    },
    setCmap(name) {
      if (name !== null && !(name in p.luts)) throw new Error(`cmap=${JSON.stringify(name)} is not one of ${Object.keys(p.luts).join(", ")}`);
      state.cmap = name;
      refreshRest();
      syncControls();
      paint();
    },
    setAlpha(alpha) {
      state.alpha = Math.min(Math.max(Number(alpha), 0), 1);
      refreshRest();
      syncControls();
      paint();
    },
    ready: null,
  };
  for (const pin of p.pins || []) {
    if (inside(pin.source, pin.row, pin.col) && state.pins.length < VIEW_MAX_PINS) {
      state.pins.push(pinEntry(pin.source, pin.row, pin.col, pin.colour));
    }
  }
  syncControls();
  showPins();
  paint();
  controller.ready = Promise.all(VIEW_SIDES.map(async (side) => {
    sides[side].photo = await drawDecodePhoto(sides[side].info.photo, sides[side].info.canvas);
  })).then(() => { paint(); return controller; });
  el.simvizView = controller;
  return controller;
}

/** Image pixel (row, col) under a mouse event on ``canvas`` (CSS may scale it), or null outside. */
function viewEventPixel(event, canvas, info) {
  const box = canvas.getBoundingClientRect();
  if (!(box.width > 0 && box.height > 0)) return null;
  const y = ((event.clientY - box.top) * info.canvas[0]) / box.height;
  const x = ((event.clientX - box.left) * info.canvas[1]) / box.width;
  return canvasToPixel(y, x, info.canvas, info.image);
}

/** A map's bilinear value at image pixel (row, col) (widgets/_canvas.py value_at_pixel). */
function viewValueAtPixel(values, [h, w], [rows, cols], row, col) {
  const u = Math.min(Math.max(((row + 0.5) * h) / rows - 0.5, 0), h - 1);
  const v = Math.min(Math.max(((col + 0.5) * w) / cols - 0.5, 0), w - 1);
  const r0 = Math.floor(u), c0 = Math.floor(v);
  const r1 = Math.min(r0 + 1, h - 1), c1 = Math.min(c0 + 1, w - 1);
  const fr = u - r0, fc = v - c0;
  return (1 - fr) * ((1 - fc) * values[r0 * w + c0] + fc * values[r0 * w + c1])
    + fr * ((1 - fc) * values[r1 * w + c0] + fc * values[r1 * w + c1]);
}

export default { render: renderHoverLayer };
