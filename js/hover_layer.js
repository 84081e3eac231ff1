// The notebook pair viewer's browser hover layer: one anywidget view per image, stacked over that
// image's ipycanvas canvas inside its event pad (the Python side's CSS makes ``el`` fill the pad).
//
// Model traits: ``side`` ("query" | "reference"), ``data`` ("IPY_MODEL_<id>" of a plain widget
// model holding ``payload`` (js/README.md; binary fields as DataView) and ``look`` ({alpha, cmap,
// reading, show_overall, show_peak, pins})), ``throttle_ms``, ``live_class`` (put on ``el`` once
// drawn: the viewer's CSS then hides its static fallback). After each payload is drawn the layer
// sends ``{type: "ready", generation}``; only then does the kernel stop drawing hovers itself. The two layers of one viewer talk through local
// Backbone events on that shared data model ("simviz:hover" / "simviz:leave", never sent to the
// kernel): the hovered layer draws only a crosshair on its transparent canvas; the other layer
// paints its photo with the point map, the peak and the pins opaquely over the kernel's canvas; on
// leave both go transparent again. The kernel hears the hovered point through ``model.send`` at a
// low rate (leading + trailing throttle); clicks and leaves reach it through ipyevents on the pad.
// Without a kernel (``data.comm_live`` false: a notebook reopened from saved widget state) the layer
// paints the rest view itself (photo + overall map + pins) and hover still works.

import { canvasToPixel, pixelToCanvas, pointMap, pointScale } from "./point_map.js";
import { decodePayload } from "./payload.js";
import { drawComposite, drawCrosshair, drawDecodePhoto, drawLabel, drawPeak, drawPhotoImage, drawPins, viewPeakPixel } from "./draw.js";

/** anywidget ``render`` of the hover layer; resolves to its cleanup function. */
export async function renderHoverLayer({ model, el }) {
  const side = model.get("side");
  const canvas = document.createElement("canvas");
  canvas.className = `simviz-hover-canvas simviz-${side}-hover`;
  canvas.style.cssText = "display:block;width:100%;height:100%;";
  el.classList.add("simviz-hover-layer");
  el.appendChild(canvas);
  const context = canvas.getContext("2d");
  const listening = {};  // Backbone context: every listener this view puts on the data model
  let disposed = false;
  let layer = null;  // {payload, info, photo, rest, hover}: this side's part of the payload, ready to paint
  let look = null;
  let shown = null;  // null (rest) | {own: true, row, col} | {own: false, source, row, col}
  let loads = 0;

  const data = await model.widget_manager.get_model(String(model.get("data")).replace(/^IPY_MODEL_/, ""));
  const live = () => Boolean(data.comm_live);
  const hasPoint = () => Boolean(layer && layer.payload.point);

  function readLook() {
    const p = layer.payload;
    look = { alpha: p.alpha, cmap: p.cmap ?? null, reading: p.reading, show_overall: p.show_overall,
      show_peak: p.show_peak, pins: p.pins || [], ...(data.get("look") || {}) };
    layer.rest = null;
  }

  /** The kernel's rest view (only painted by this layer when there is no kernel). */
  function paintRest() {
    const { payload, info, photo } = layer;
    if (!layer.rest) {
      const scale = { ...payload.overall, cmap: look.cmap ?? payload.overall.cmap };
      layer.rest = info.map && !info.missing && look.show_overall
        ? drawComposite(photo, info.canvas, info.map.values, info.map.shape, scale,
          payload.luts[scale.cmap] || payload.luts[payload.overall.cmap], look.alpha)
        : drawPhotoImage(photo, info.canvas);
    }
    context.putImageData(layer.rest, 0, 0);
    if (info.missing) drawLabel(context, info.missing, info.canvas);
    drawPins(context, side, look.pins, info.canvas, info.image);
  }

  function paint() {
    if (disposed) return;
    if (!layer) {
      context.clearRect(0, 0, canvas.width, canvas.height);
      return;
    }
    const { payload, info, photo } = layer;
    if (!shown || !hasPoint()) {
      if (live()) context.clearRect(0, 0, canvas.width, canvas.height);
      else paintRest();
      return;
    }
    if (shown.own) {  // the hovered image: a crosshair over whatever is underneath
      if (live()) context.clearRect(0, 0, canvas.width, canvas.height);
      else paintRest();
      drawCrosshair(context, ...pixelToCanvas(shown.row, shown.col, info.canvas, info.image));
      return;
    }
    const point = payload.point;
    const source = payload.sides[shown.source];
    const { values, grid } = pointMap(point, shown.source, shown.row, shown.col, source.image, look.reading);
    const scale = pointScale(values, look.reading, point.readings, look.cmap);
    const lut = payload.luts[scale.cmap] || payload.luts[payload.overall.cmap];
    layer.hover = drawComposite(photo, info.canvas, values, grid, scale, lut, look.alpha, layer.hover);
    context.putImageData(layer.hover, 0, 0);
    if (look.show_peak) {
      const peak = viewPeakPixel(values, grid, info.image);
      drawPeak(context, ...pixelToCanvas(peak[0], peak[1], info.canvas, info.image));
    }
    drawPins(context, side, look.pins, info.canvas, info.image);
  }

  async function load() {
    const mine = ++loads;
    const raw = data.get("payload");
    layer = null;
    shown = null;
    paint();
    if (!raw || !raw.sides) return;
    const payload = decodePayload(raw);
    const info = payload.sides[side];
    const photo = await drawDecodePhoto(info.photo, info.canvas);
    if (disposed || mine !== loads) return;  // a newer payload arrived while this one decoded
    canvas.height = info.canvas[0];
    canvas.width = info.canvas[1];
    layer = { payload, info, photo, rest: null, hover: null };
    readLook();
    paint();
    // Drawn: hide the viewer's static fallback (its CSS looks for this class), and tell the kernel
    // this explanation's hovers are drawn here from now on.
    const liveClass = model.get("live_class");
    if (liveClass) el.classList.add(liveClass);
    tell({ type: "ready", generation: payload.generation });  // not a hover: no throttle window
  }

  // -- to the kernel: the hovered point, leading + trailing throttle ---------------------------------
  let lastSent = -Infinity;
  let timer = null;
  let pending = null;
  function tell(message) {
    if (!live()) return;
    try {
      model.send(message);
    } catch (error) {
      console.warn("simviz hover layer: could not send the kernel", message.type, error);
    }
  }
  function send(message) {  // a hover report: it opens a throttle window
    tell(message);
    lastSent = performance.now();
  }
  function flush() {
    timer = null;
    const message = pending;
    pending = null;
    if (message) send(message);
  }
  function throttled(message) {
    const wait = Math.max(0, Number(model.get("throttle_ms")) || 0);
    const since = performance.now() - lastSent;
    if (timer === null && since >= wait) {
      send(message);
      return;
    }
    pending = message;
    if (timer === null) timer = setTimeout(flush, Math.max(0, wait - since));
  }
  function cancelPending() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    pending = null;
  }

  // -- mouse ---------------------------------------------------------------------------------------
  function onMove(event) {
    if (!hasPoint()) return;  // overall maps only: the kernel's view stays as it is
    const box = el.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0)) return;
    const relativeX = event.clientX - box.left;
    const relativeY = event.clientY - box.top;
    const { info, payload } = layer;
    const pixel = canvasToPixel(relativeY * info.canvas[0] / box.height, relativeX * info.canvas[1] / box.width,
      info.canvas, info.image);
    if (!pixel) return;
    shown = { own: true, row: pixel[0], col: pixel[1] };
    paint();
    data.trigger("simviz:hover", { side, row: pixel[0], col: pixel[1], generation: payload.generation });
    throttled({ type: "mousemove", relativeX, relativeY, boundingRectWidth: box.width, boundingRectHeight: box.height,
      timeStamp: event.timeStamp, generation: payload.generation });
  }
  function onLeave() {
    cancelPending();
    if (!layer) return;
    shown = null;
    paint();
    data.trigger("simviz:leave", { side, generation: layer.payload.generation });
  }
  // A click right after a move: the pending trailing report goes first, so the kernel's hovered
  // point is not older than the pin (ipyevents sends the click from the pad, after this listener).
  const onPress = () => { if (timer !== null) { clearTimeout(timer); flush(); } };
  el.addEventListener("mousemove", onMove);
  el.addEventListener("mouseleave", onLeave);
  el.addEventListener("mousedown", onPress);

  // -- from the other layer, the data model and the kernel ------------------------------------------
  data.on("simviz:hover", (message) => {
    if (!layer || message.side === side || message.generation !== layer.payload.generation) return;
    shown = { own: false, source: message.side, row: message.row, col: message.col };
    paint();
  }, listening);
  data.on("simviz:leave", (message) => {
    if (!layer || message.side === side || !shown || shown.own) return;
    shown = null;
    paint();
  }, listening);
  data.on("change:payload", () => load().catch((error) => {
    console.error("simviz hover layer: cannot show this explanation", error);
    layer = null;
    paint();
  }), listening);
  data.on("change:look", () => {
    if (!layer) return;
    readLook();
    paint();
  }, listening);
  data.on("comm_live_update", paint, listening);

  const cleanup = () => {
    disposed = true;
    cancelPending();
    data.off(null, null, listening);
    el.removeEventListener("mousemove", onMove);
    el.removeEventListener("mouseleave", onLeave);
    el.removeEventListener("mousedown", onPress);
    canvas.remove();
  };
  try {
    await load();
  } catch (error) {  // a payload this module cannot read: stay transparent; the kernel keeps hover
    console.error("simviz hover layer: cannot show this explanation", error);
    layer = null;
    paint();
  }
  return cleanup;
}
