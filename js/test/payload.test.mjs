// js/payload.js: every binary form decodes to the same typed arrays; malformed payloads fail with a
// message naming the field. The payloads come from js/test/fixtures.json (built by tests/test_js.py
// in js/README.md's format, base64 as a standalone page gets them). Run: node --test js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { decodePayload } from "../payload.js";

const fixtures = JSON.parse(readFileSync(new URL("./fixtures.json", import.meta.url), "utf8"));
const { expected } = fixtures.payloads;
const clone = (value) => structuredClone(value);

/** Base64 text -> bytes in the given form; "unaligned" is a DataView at byte offset 1 of a larger buffer. */
function asForm(text, form) {
  const bytes = new Uint8Array(Buffer.from(text, "base64"));
  if (form === "base64") return text;
  if (form === "Uint8Array") return bytes;
  if (form === "ArrayBuffer") return bytes.slice().buffer;
  if (form === "DataView") return new DataView(bytes.slice().buffer);
  if (form === "unaligned") {
    const buffer = new ArrayBuffer(bytes.length + 3);
    new Uint8Array(buffer).set(bytes, 1);
    return new DataView(buffer, 1, bytes.length);
  }
  if (form === "unaligned Uint8Array") {
    const buffer = new ArrayBuffer(bytes.length + 6);
    new Uint8Array(buffer).set(bytes, 2);
    return new Uint8Array(buffer, 2, bytes.length);
  }
  throw new Error(`unknown form ${form}`);
}

/** A copy of a base64 payload with every binary field in `form`. */
function convert(raw, form) {
  const out = clone(raw);
  for (const name of Object.keys(out.luts)) out.luts[name] = asForm(out.luts[name], form);
  for (const side of ["query", "reference"]) {
    out.sides[side].photo = asForm(out.sides[side].photo, form);
    if (out.sides[side].map) out.sides[side].map.values = asForm(out.sides[side].map.values, form);
  }
  const point = out.point;
  if (point.matrix) for (const r of Object.keys(point.matrix)) point.matrix[r] = asForm(point.matrix[r], form);
  if (point.factors) {
    for (const f of Object.values(point.factors)) {
      f.query = asForm(f.query, form);
      f.reference = asForm(f.reference, form);
    }
  }
  return out;
}

function assertDecoded(payload, encoding) {
  assert.equal(payload.format, 1);
  assert.ok(payload.luts.gray instanceof Uint8Array);
  assert.deepEqual(Array.from(payload.luts.gray), expected.gray);
  for (const side of ["query", "reference"]) {
    assert.ok(payload.sides[side].photo instanceof Uint8Array);
    assert.deepEqual(Array.from(payload.sides[side].photo), expected.photo);
  }
  const map = payload.sides.query.map;
  assert.ok(map.values instanceof Float32Array);
  assert.deepEqual(Array.from(map.values), expected.query_map);
  assert.deepEqual(map.shape, [2, 3]);
  assert.equal(payload.sides.reference.map, null);
  assert.equal(payload.sides.reference.missing, "n/a: no map");
  assert.deepEqual(payload.sides.query.canvas, [40, 60]);
  assert.equal(payload.point.encoding, encoding);
  if (encoding === "matrix") {
    for (const reading of ["contribution", "correspondence"]) {
      assert.ok(payload.point.matrix[reading] instanceof Float32Array);
      assert.deepEqual(Array.from(payload.point.matrix[reading]), expected.matrix[reading]);
    }
  } else {
    for (const reading of ["contribution", "correspondence"]) {
      const f = payload.point.factors[reading];
      assert.ok(f.query instanceof Float32Array && f.reference instanceof Float32Array);
      assert.deepEqual(Array.from(f.query), expected.factors[reading].query);
      assert.deepEqual(Array.from(f.reference), expected.factors[reading].reference);
      assert.equal(f.width, 3);
    }
    assert.equal(payload.point.factors.contribution.scale, 0.5);
  }
  assert.deepEqual(payload.pins, fixtures.payloads.matrix.pins);
  assert.equal(payload.overall.mode, "symmetric");
}

describe("decodePayload: every binary form", () => {
  for (const encoding of ["matrix", "factors"]) {
    for (const form of ["base64", "DataView", "unaligned", "ArrayBuffer", "Uint8Array", "unaligned Uint8Array"]) {
      test(`${encoding} payload, fields as ${form}`, () => {
        const raw = convert(fixtures.payloads[encoding], form);
        assertDecoded(decodePayload(raw), encoding);
      });
    }
  }
  test("returns a new object and leaves the raw payload as it was", () => {
    const raw = clone(fixtures.payloads.matrix);
    const decoded = decodePayload(raw);
    assert.notEqual(decoded, raw);
    assert.deepEqual(raw, fixtures.payloads.matrix);
    assert.equal(typeof raw.sides.query.map.values, "string");
  });
  test("an aligned buffer is viewed in place; an unaligned one is copied into an aligned buffer", () => {
    const aligned = decodePayload(convert(fixtures.payloads.matrix, "DataView"));
    assert.equal(aligned.point.matrix.contribution.byteOffset % 4, 0);
    const unaligned = decodePayload(convert(fixtures.payloads.matrix, "unaligned"));
    const values = unaligned.sides.query.map.values;
    assert.equal(values.byteOffset % 4, 0);
    assert.equal(values.buffer.byteLength, values.byteLength);
  });
  test("a payload without point maps decodes point as null", () => {
    const decoded = decodePayload({ ...clone(fixtures.payloads.matrix), point: null });
    assert.equal(decoded.point, null);
  });
});

describe("decodePayload: errors name the field, what was expected and what came", () => {
  const raw = () => clone(fixtures.payloads.matrix);

  test("a wrong or missing format", () => {
    assert.throws(() => decodePayload({ ...raw(), format: 2 }), /payload format: expected 1 .*got number 2/);
    const { format, ...noFormat } = raw();
    assert.equal(format, 1);
    assert.throws(() => decodePayload(noFormat), /payload format: expected 1/);
    assert.throws(() => decodePayload(null), /expected an object, got null/);
  });
  test("a map with the wrong number of values", () => {
    const bad = raw();
    const bytes = Buffer.from(bad.sides.query.map.values, "base64");
    bad.sides.query.map.values = bytes.subarray(0, bytes.length - 4).toString("base64");
    assert.throws(() => decodePayload(bad),
      /payload sides\.query\.map\.values: expected 6 float32 values \(shape 2x3\), got 5 \(20 bytes\)/);
    bad.sides.query.map.values = new Uint8Array(7);
    assert.throws(() => decodePayload(bad), /sides\.query\.map\.values: expected 6 float32 values.*7 bytes/);
  });
  test("a matrix, a factor array or a LUT of the wrong length", () => {
    const matrix = raw();
    matrix.point.matrix.correspondence = new Float32Array(5).buffer;
    assert.throws(() => decodePayload(matrix),
      /point\.matrix\.correspondence: expected 12 float32 values \(Nq x Nr = 6 x 2\), got 5/);
    const factors = clone(fixtures.payloads.factors);
    factors.point.factors.contribution.width = 4;
    assert.throws(() => decodePayload(factors), /point\.factors\.contribution\.query: expected 24 float32 values/);
    const lut = raw();
    lut.luts.gray = new Uint8Array(1000);
    assert.throws(() => decodePayload(lut), /payload luts\.gray: expected 1024 bytes \(256 x RGBA\), got 1000/);
  });
  test("fields of the wrong kind", () => {
    const photo = raw();
    photo.sides.reference.photo = 42;
    assert.throws(() => decodePayload(photo), /sides\.reference\.photo: expected bytes .*got number 42/);
    const shape = raw();
    shape.point.grids.query = [2, 0];
    assert.throws(() => decodePayload(shape), /point\.grids\.query: expected \[rows, cols\]/);
    const encoding = raw();
    encoding.point.encoding = "dense";
    assert.throws(() => decodePayload(encoding), /point\.encoding: expected "matrix" or "factors"/);
    const missing = raw();
    missing.point.encoding = "factors";
    assert.throws(() => decodePayload(missing), /point\.factors: expected/);
    const text = raw();
    text.sides.query.map.values = "not base64 at all!";
    assert.throws(() => decodePayload(text), /sides\.query\.map\.values: expected base64 text/);
    const noSide = raw();
    delete noSide.sides.reference;
    assert.throws(() => decodePayload(noSide), /sides\.reference: expected an object/);
  });
});
