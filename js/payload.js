// payload.js — turns the payload Python sends (js/README.md) into typed arrays, and checks it.
//
// Binary fields come as base64 text (the standalone page's JSON) or as buffers (ipywidgets hands
// binary buffers over as DataView; ArrayBuffer and Uint8Array are accepted too). A Float32Array
// needs a byte offset that is a multiple of 4, which a DataView into a larger message need not
// have: such bytes are copied into a buffer of their own; aligned ones are viewed in place.
// Checks are strict and say what they expected, so a malformed payload fails here, loudly, and
// not as a garbled picture later. No DOM, no imports; top-level names start with `payload`.

const payloadFormat = 1;
const payloadSideNames = ["query", "reference"];
const payloadReadingNames = ["contribution", "correspondence"];
const payloadLutBytes = 256 * 4;
// The payload's float32 bytes are little-endian (numpy on every platform Python runs here).
const payloadLittleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function payloadDescribe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of ${value.byteLength} bytes`;
  if (value instanceof ArrayBuffer) return `an ArrayBuffer of ${value.byteLength} bytes`;
  if (typeof value === "string") return `a string of ${value.length} characters`;
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function payloadFail(field, expected, value) {
  throw new Error(`payload ${field}: expected ${expected}, got ${payloadDescribe(value)}`);
}

function payloadObject(value, field) {
  if (value === null || typeof value !== "object" || Array.isArray(value) || ArrayBuffer.isView(value)) {
    payloadFail(field, "an object", value);
  }
  return value;
}

function payloadBase64(text, field) {
  let binary;
  try {
    binary = atob(text);
  } catch (err) {
    throw new Error(`payload ${field}: expected base64 text, got ${payloadDescribe(text)} that is not base64`);
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The bytes of a binary field as a Uint8Array (a view where the input is a buffer). */
function payloadBytes(value, field) {
  if (typeof value === "string") return payloadBase64(value, field);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return payloadFail(field, "bytes (base64 text, DataView, ArrayBuffer or Uint8Array)", value);
}

/** A binary field of float32 values as a Float32Array of `count` values (`what` names the shape). */
function payloadFloat32(value, field, count, what) {
  const bytes = payloadBytes(value, field);
  if (bytes.byteLength !== count * 4) {
    const got = bytes.byteLength % 4 === 0 ? `${bytes.byteLength / 4} (${bytes.byteLength} bytes)`
      : `${bytes.byteLength} bytes, not a whole number of float32 values`;
    throw new Error(`payload ${field}: expected ${count} float32 values (${what}), got ${got}`);
  }
  if (!payloadLittleEndian) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  return new Float32Array(bytes.slice().buffer); // slice(): a fresh, aligned copy
}

function payloadShape(value, field) {
  const ok = Array.isArray(value) && value.length === 2 && value.every((n) => Number.isInteger(n) && n > 0);
  if (!ok) payloadFail(field, "[rows, cols] of two positive integers", value);
  return [value[0], value[1]];
}

function payloadSide(raw, name) {
  const field = `sides.${name}`;
  const side = payloadObject(raw, field);
  const out = { ...side };
  out.image = payloadShape(side.image, `${field}.image`);
  out.canvas = payloadShape(side.canvas, `${field}.canvas`);
  const photo = payloadBytes(side.photo, `${field}.photo`);
  if (photo.byteLength === 0) payloadFail(`${field}.photo`, "PNG bytes", side.photo);
  out.photo = photo;
  if (side.map === null || side.map === undefined) {
    out.map = null;
  } else {
    const map = payloadObject(side.map, `${field}.map`);
    const shape = payloadShape(map.shape, `${field}.map.shape`);
    out.map = {
      ...map,
      shape,
      values: payloadFloat32(map.values, `${field}.map.values`, shape[0] * shape[1], `shape ${shape[0]}x${shape[1]}`),
    };
  }
  return out;
}

function payloadPoint(raw) {
  const point = payloadObject(raw, "point");
  const out = { ...point };
  const grids = payloadObject(point.grids, "point.grids");
  const gq = payloadShape(grids.query, "point.grids.query");
  const gr = payloadShape(grids.reference, "point.grids.reference");
  out.grids = { ...grids, query: gq, reference: gr };
  const nq = gq[0] * gq[1];
  const nr = gr[0] * gr[1];
  if (point.encoding !== "matrix" && point.encoding !== "factors") {
    payloadFail("point.encoding", '"matrix" or "factors"', point.encoding);
  }
  if (point[point.encoding] === null || point[point.encoding] === undefined) {
    payloadFail(`point.${point.encoding}`, `the arrays its encoding names`, point[point.encoding]);
  }
  if (point.matrix !== null && point.matrix !== undefined) {
    const matrix = payloadObject(point.matrix, "point.matrix");
    out.matrix = { ...matrix };
    for (const reading of payloadReadingNames) {
      out.matrix[reading] = payloadFloat32(matrix[reading], `point.matrix.${reading}`, nq * nr,
        `Nq x Nr = ${nq} x ${nr}`);
    }
  }
  if (point.factors !== null && point.factors !== undefined) {
    const factors = payloadObject(point.factors, "point.factors");
    out.factors = { ...factors };
    for (const reading of payloadReadingNames) {
      const field = `point.factors.${reading}`;
      const part = payloadObject(factors[reading], field);
      const width = part.width;
      if (!Number.isInteger(width) || width < 1) payloadFail(`${field}.width`, "a positive integer", width);
      if (typeof part.scale !== "number" || !Number.isFinite(part.scale)) {
        payloadFail(`${field}.scale`, "a finite number", part.scale);
      }
      out.factors[reading] = {
        ...part,
        query: payloadFloat32(part.query, `${field}.query`, nq * width, `Nq x K = ${nq} x ${width}`),
        reference: payloadFloat32(part.reference, `${field}.reference`, nr * width, `Nr x K = ${nr} x ${width}`),
      };
    }
  }
  return out;
}

/**
 * A new payload object with every binary field as a typed array: sides.*.photo (PNG) and luts.* ->
 * Uint8Array (luts: 1024 bytes, 256 x RGBA); map values, point matrices and factors -> Float32Array.
 * Other fields are kept as they are. Throws an Error naming the field on a wrong format, a wrong
 * length or a field of the wrong kind.
 */
export function decodePayload(raw) {
  const payload = payloadObject(raw, "(the payload itself)");
  if (payload.format !== payloadFormat) {
    payloadFail("format", `${payloadFormat} (the format this page reads)`, payload.format);
  }
  const out = { ...payload };
  const luts = payloadObject(payload.luts, "luts");
  out.luts = {};
  for (const name of Object.keys(luts)) {
    const lut = payloadBytes(luts[name], `luts.${name}`);
    if (lut.byteLength !== payloadLutBytes) {
      throw new Error(`payload luts.${name}: expected ${payloadLutBytes} bytes (256 x RGBA), got ${lut.byteLength}`);
    }
    out.luts[name] = lut;
  }
  const sides = payloadObject(payload.sides, "sides");
  out.sides = { ...sides };
  for (const name of payloadSideNames) out.sides[name] = payloadSide(sides[name], name);
  out.point = payload.point === null || payload.point === undefined ? null : payloadPoint(payload.point);
  return out;
}
