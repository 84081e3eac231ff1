// js/render.js against Python (js/test/fixtures.json, written by tests/test_js.py) and against
// answers worked out by hand. Run: node --test js/
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  roundHalfEven, sourcePositions, upsampleBilinear, normalizeLimits, unitValues, colourMap, blendOverPhoto,
} from "../render.js";
import {
  pixelToCell, cellCentrePixel, pixelToCanvas, canvasToPixel, pointRow, pointMap, peakCell, sumValues, pointScale,
} from "../point_map.js";

const fixtures = JSON.parse(readFileSync(new URL("./fixtures.json", import.meta.url), "utf8"));
const bytesOf = (text) => new Uint8Array(Buffer.from(text, "base64"));
const f32 = (list) => Float32Array.from(list);
const luts = Object.fromEntries(Object.entries(fixtures.luts).map(([name, text]) => [name, bytesOf(text)]));

/** Exact equality, element by element (Object.is: -0 and 0 differ, as they do in numpy's output). */
function assertSameValues(actual, expected, label) {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      assert.fail(`${label}: element ${i} is ${actual[i]}, Python has ${expected[i]}`);
    }
  }
}

/** |actual - expected| <= rel * max |expected| everywhere. */
function assertClose(actual, expected, rel, label) {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  const tol = rel * scale;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (!(diff <= tol)) {
      assert.fail(`${label}: element ${i} is ${actual[i]}, Python has ${expected[i]} (|diff| ${diff} > ${tol})`);
    }
  }
}

/** The RGB bytes of an RGBA buffer. */
function rgbOf(rgba) {
  const out = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    out[j] = rgba[i];
    out[j + 1] = rgba[i + 1];
    out[j + 2] = rgba[i + 2];
  }
  return out;
}

describe("roundHalfEven", () => {
  test("equals np.round on ties, near-ties, negatives and zeros", () => {
    const { inputs, expected } = fixtures.round;
    assertSameValues(inputs.map(roundHalfEven), expected, "np.round");
  });
  test("known answers", () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
    assert.ok(Object.is(roundHalfEven(-0.2), -0));
    assert.ok(Number.isNaN(roundHalfEven(NaN)));
    assert.equal(roundHalfEven(Infinity), Infinity);
  });
});

describe("sourcePositions / upsampleBilinear", () => {
  test("positions of 6 output pixels over 2 cells (hand-computed)", () => {
    const { lower, upper, weight } = sourcePositions(6, 2);
    assert.deepEqual(Array.from(lower), [0, 0, 0, 0, 1, 1]);
    assert.deepEqual(Array.from(upper), [1, 1, 1, 1, 1, 1]);
    // ((p + 0.5) * 2) / 6 - 0.5: 1/3 and 2/3 up to float64 rounding of that very formula
    assert.deepEqual(Array.from(weight), [0, 0, 5 / 6 - 0.5, 7 / 6 - 0.5, 0, 0]);
    assert.ok(Math.abs(weight[2] - 1 / 3) < 1e-15 && Math.abs(weight[3] - 2 / 3) < 1e-15);
    assert.ok(lower instanceof Int32Array && upper instanceof Int32Array && weight instanceof Float64Array);
  });
  test("[[0, 3]] to 1x6 is [0, 0, 1, 2, 3, 3]", () => {
    assert.deepEqual(Array.from(upsampleBilinear(f32([0, 3]), [1, 2], [1, 6])), [0, 0, 1, 2, 3, 3]);
  });
  test("a 2x2 map to 4x4: edges clamped, centres in between (hand-computed)", () => {
    const out = upsampleBilinear(f32([0, 4, 8, 12]), [2, 2], [4, 4]);
    assert.deepEqual(Array.from(out), [0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12]);
  });
  test("same size returns the same values; 1x1 fills", () => {
    const values = f32([0.1, -0.2, 0.3, 0.7, 1.5, -2.25]);
    assertSameValues(upsampleBilinear(values, [2, 3], [2, 3]), values, "identity");
    assert.deepEqual(Array.from(upsampleBilinear(f32([2.5]), [1, 1], [2, 3])), [2.5, 2.5, 2.5, 2.5, 2.5, 2.5]);
  });
  test("bit-identical to Python's upsample_bilinear (growing, shrinking, 1xN, Nx1, 1x1)", () => {
    for (const c of fixtures.upsample) {
      const out = upsampleBilinear(f32(c.values), c.shape, c.size);
      assert.ok(out instanceof Float32Array);
      assertSameValues(out, c.expected, `${c.shape} -> ${c.size}`);
    }
  });
  test("a wrong number of values is an error naming the field", () => {
    assert.throws(() => upsampleBilinear(f32([1, 2, 3]), [2, 2], [4, 4]), /values: expected 4 values, got 3/);
  });
});

describe("normalizeLimits / unitValues", () => {
  test("limits and unit values equal Python's normalize_map (every mode, given limits, flat maps)", () => {
    for (const c of fixtures.normalize) {
      const label = `${c.mode} vmin=${c.vmin} vmax=${c.vmax} ${c.shape}`;
      const values = f32(c.values);
      if (c.error) {
        assert.throws(() => normalizeLimits(values, c.mode, c.vmin, c.vmax), /smaller than vmin/, label);
        continue;
      }
      const [lo, hi] = normalizeLimits(values, c.mode, c.vmin, c.vmax);
      assert.ok(Object.is(lo, c.lo) && Object.is(hi, c.hi), `${label}: limits ${lo}, ${hi} vs ${c.lo}, ${c.hi}`);
      const unit = unitValues(values, c.mode, lo, hi);
      assert.ok(unit instanceof Float32Array);
      assertSameValues(unit, c.unit, label);
    }
  });
  test("known answers", () => {
    const values = f32([-2, 0, 1]);
    assert.deepEqual(normalizeLimits(values, "symmetric"), [-2, 2]);
    assert.deepEqual(Array.from(unitValues(values, "symmetric", -2, 2)), [0, 0.5, 0.75]);
    assert.deepEqual(normalizeLimits(values, "minmax"), [-2, 1]);
    assert.deepEqual(normalizeLimits(values, "none"), [0, 1]);
    assert.deepEqual(Array.from(unitValues(f32([0.25, 2]), "none", 0, 1)), [0.25, 1]);
    assert.deepEqual(Array.from(unitValues(f32([0, 0]), "symmetric", -0, 0)), [0.5, 0.5]); // flat: 0 stays mid
    assert.deepEqual(Array.from(unitValues(f32([3, 3]), "minmax", 3, 3)), [0, 0]);
  });
  test("errors: vmax < vmin, an unknown mode", () => {
    assert.throws(() => normalizeLimits(f32([1]), "minmax", 2, 1), /vmax \(1\) is smaller than vmin \(2\)/);
    assert.throws(() => normalizeLimits(f32([1]), "log"), /mode/);
  });
});

describe("colourMap", () => {
  test("equals Python's map_to_rgba byte for byte (4 LUTs, 3 modes, alpha 1 and 0.8, value opacity)", () => {
    for (const c of fixtures.colour.cases) {
      const set = fixtures.colour.values[c.values];
      const out = colourMap(f32(set.values), {
        lut: luts[c.lut], mode: c.mode, lo: c.lo, hi: c.hi, alpha: c.alpha, alphaFromValue: c.alpha_from_value,
      });
      assert.ok(out instanceof Uint8ClampedArray);
      assertSameValues(out, bytesOf(c.expected),
        `${c.lut} ${c.values} ${c.mode} alpha=${c.alpha} alphaFromValue=${c.alpha_from_value}`);
    }
  });
  test("gray [0, 1] at alpha 0.5 gives [0 .. 128], [255 .. 128] (map_to_rgba's doctest)", () => {
    const out = colourMap(f32([0, 1]), { lut: luts.gray, mode: "minmax", lo: 0, hi: 1, alpha: 0.5 });
    assert.deepEqual(Array.from(out), [0, 0, 0, 128, 255, 255, 255, 128]);
  });
  test("value opacity: symmetric 0 is transparent, the extremes opaque", () => {
    const out = colourMap(f32([-1, 0, 1]), { lut: luts.gray, mode: "symmetric", alphaFromValue: true });
    assert.deepEqual([out[3], out[7], out[11]], [255, 0, 255]);
  });
});

describe("blendOverPhoto", () => {
  const groups = fixtures.blend.map((group) => {
    const rgba = bytesOf(group.photo_rgba);
    return { ...group, rgba, rgb: rgbOf(rgba) };
  });
  const { size, rgb, cases } = groups[0];
  const [rows, cols] = size;

  test("equals Python's overlay exactly (0 difference per channel), from RGB and from RGBA photos", () => {
    for (const group of groups) {
      for (const c of group.cases) {
        const expected = bytesOf(c.expected);
        for (const [photo, channels] of [[group.rgb, 3], [group.rgba, 4]]) {
          const out = blendOverPhoto(photo, channels, group.size, f32(c.values), c.shape,
            { lut: luts[c.lut], mode: c.mode, lo: c.lo, hi: c.hi, alpha: c.alpha });
          assert.equal(out.length, group.size[0] * group.size[1] * 4);
          let maxDiff = 0;
          for (let i = 0, j = 0; j < expected.length; i += 4, j += 3) {
            for (let k = 0; k < 3; k++) maxDiff = Math.max(maxDiff, Math.abs(out[i + k] - expected[j + k]));
            assert.equal(out[i + 3], 255);
          }
          assert.equal(maxDiff, 0, `${c.name} (${channels} channels): max difference ${maxDiff} per channel`);
        }
      }
    }
  });
  test("fills a given buffer, and a reused buffer gives the same pixels", () => {
    const c = cases[0];
    const options = { lut: luts[c.lut], mode: c.mode, lo: c.lo, hi: c.hi, alpha: c.alpha };
    const fresh = blendOverPhoto(rgb, 3, size, f32(c.values), c.shape, options);
    const out = new Uint8ClampedArray(rows * cols * 4).fill(7);
    assert.equal(blendOverPhoto(rgb, 3, size, f32(c.values), c.shape, options, out), out);
    assert.deepEqual(out, fresh);
    blendOverPhoto(rgb, 3, size, f32(cases[1].values), cases[1].shape, options, out);
    assert.deepEqual(blendOverPhoto(rgb, 3, size, f32(c.values), c.shape, options, out), fresh);
  });
  test("a black photo under gray [[0, 1]] at alpha 1 (hand-computed)", () => {
    // Upsampled to 4 columns: 0, .25, .75, 1 -> colour 0, 64, 191, 255 with opacity 0, 64, 191, 255
    // out of 255, so the blend gives c * a / 255: 0, 16.06, 143.06, 255.
    const out = blendOverPhoto(new Uint8Array(2 * 4 * 3), 3, [2, 4], f32([0, 1]), [1, 2],
      { lut: luts.gray, mode: "minmax", alpha: 1 });
    assert.deepEqual(Array.from(out.filter((_, i) => i % 4 === 0)), [0, 16, 143, 255, 0, 16, 143, 255]);
  });
  test("checks its inputs", () => {
    const options = { lut: luts.gray, mode: "minmax", alpha: 0.8 };
    assert.throws(() => blendOverPhoto(new Uint8Array(10), 3, [2, 2], f32([1]), [1, 1], options), /photo: expected 12/);
    assert.throws(() => blendOverPhoto(new Uint8Array(12), 2, [2, 2], f32([1]), [1, 1], options), /channels/);
    assert.throws(() => blendOverPhoto(new Uint8Array(12), 3, [2, 2], f32([1]), [1, 1], { ...options, alpha: 2 }),
      /alpha/);
  });
});

describe("point-to-point maps", () => {
  for (const config of fixtures.points) {
    const { point: raw, images } = config;
    const decoded = (encoding) => ({
      grids: raw.grids,
      encoding,
      matrix: { contribution: f32(raw.matrix.contribution), correspondence: f32(raw.matrix.correspondence) },
      factors: Object.fromEntries(Object.entries(raw.factors).map(([reading, f]) => [reading,
        { query: f32(f.query), reference: f32(f.reference), width: f.width, scale: f.scale }])),
    });

    for (const encoding of ["matrix", "factors"]) {
      const point = decoded(encoding);
      test(`${config.name}, ${encoding}: pointRow equals PointToPoint.row (edges, corners, fractions)`, () => {
        for (const c of config.rows) {
          const out = pointRow(point, c.source, c.cell[0], c.cell[1], c.reading);
          assert.ok(out instanceof Float32Array);
          assertClose(out, c.expected, 1e-5, `${c.source} cell ${c.cell} ${c.reading}`);
        }
      });
      test(`${config.name}, ${encoding}: pointMap equals from_query / from_reference`, () => {
        for (const c of config.maps) {
          const label = `${c.source} pixel ${c.pixel} ${c.reading}`;
          const { values, grid } = pointMap(point, c.source, c.pixel[0], c.pixel[1], images[c.source], c.reading);
          assert.deepEqual(grid, c.grid, label);
          assertClose(values, c.expected, 1e-5, label);
          assert.deepEqual(peakCell(values, grid), c.peak, `${label}: peak`);
          const scale = Math.max(...c.expected.map(Math.abs));
          assert.ok(Math.abs(sumValues(values) - c.sum) <= 1e-5 * scale * values.length, `${label}: sum`);
        }
      });
    }

    test(`${config.name}: pixelToCell, peaks and their centres equal Python's exactly`, () => {
      for (const c of config.maps) {
        const grid = raw.grids[c.source];
        assert.deepEqual(pixelToCell(c.pixel[0], c.pixel[1], images[c.source], grid), c.cell);
        assert.deepEqual(peakCell(f32(c.expected), c.grid), c.peak);
        const other = c.source === "query" ? "reference" : "query";
        assert.deepEqual(cellCentrePixel(c.peak[0], c.peak[1], c.grid, images[other]), c.peak_pixel);
        assert.equal(sumValues(f32(c.expected)), c.sum, "np.sum(values, dtype=float64), bit for bit");
      }
    });
  }

  test("known answers: identity factors, a pixel between two cells", () => {
    // D = I on 1x2 grids: a query pixel halfway between the two cells sees half of each.
    const point = {
      grids: { query: [1, 2], reference: [1, 2] },
      encoding: "factors",
      factors: { contribution: { query: f32([1, 0, 0, 1]), reference: f32([1, 0, 0, 1]), width: 2, scale: 2 } },
    };
    assert.deepEqual(Array.from(pointMap(point, "query", 0, 1.5, [1, 4], "contribution").values), [1, 1]);
    assert.deepEqual(Array.from(pointRow(point, "reference", 0, -0.5, "contribution")), [2, 0]); // clamped
    const matrix = { ...point, encoding: "matrix", matrix: { contribution: f32([1, 2, 3, 4]) } };
    assert.deepEqual(Array.from(pointRow(matrix, "query", 0, 1, "contribution")), [3, 4]); // a row
    assert.deepEqual(Array.from(pointRow(matrix, "reference", 0, 0, "contribution")), [1, 3]); // a column
    assert.deepEqual(Array.from(pointRow(matrix, "reference", 0, 0.25, "contribution")), [1.25, 3.25]);
  });
  test("unknown source, reading or encoding are errors", () => {
    const point = { grids: { query: [1, 1], reference: [1, 1] }, encoding: "matrix",
      matrix: { contribution: f32([1]) } };
    assert.throws(() => pointRow(point, "ref", 0, 0, "contribution"), /source/);
    assert.throws(() => pointRow(point, "query", 0, 0, "cosine"), /reading/);
    assert.throws(() => pointRow({ ...point, encoding: "dense" }, "query", 0, 0, "contribution"), /encoding/);
    assert.throws(() => pointRow(point, "query", 0, 0, "correspondence"), /matrix.correspondence/);
  });
});

describe("peakCell / sumValues", () => {
  test("first maximum, like numpy's argmax", () => {
    for (const c of fixtures.peaks) assert.deepEqual(peakCell(f32(c.values), c.grid), c.peak, `${c.values}`);
    assert.deepEqual(peakCell(f32([1, 5, 5, 5]), [2, 2]), [0, 1]);
    assert.deepEqual(peakCell(f32([1, NaN, 7]), [1, 3]), [0, 1]); // argmax stops at a NaN
  });
  test("sums equal np.sum(values, dtype=float64) bit for bit (pairwise summation)", () => {
    for (const c of fixtures.sums) assert.equal(sumValues(f32(c.values)), c.expected, `${c.values.length} values`);
    assert.equal(sumValues(f32([0.5, 0.25, -1])), -0.25);
  });
});

describe("geometry", () => {
  test("cellCentrePixel equals cell_centre_pixels", () => {
    for (const c of fixtures.centres) {
      assert.deepEqual(cellCentrePixel(c.cell[0], c.cell[1], c.grid, c.image), c.expected);
    }
    assert.deepEqual(cellCentrePixel(0, 1, [2, 2], [8, 8]), [1.5, 5.5]);
  });
  test("pixelToCell: half-pixel centres, clamped", () => {
    assert.deepEqual(pixelToCell(1.5, 5.5, [8, 8], [2, 2]), [0, 1]);
    assert.deepEqual(pixelToCell(-0.5, 7.5, [8, 8], [2, 2]), [0, 1]);
    assert.deepEqual(pixelToCell(3.5, 3.5, [8, 8], [2, 2]), [0.5, 0.5]);
  });
  test("pixelToCanvas and canvasToPixel equal pixel_to_canvas and event_to_pixel; round trip", () => {
    for (const c of fixtures.canvas.pixels) {
      const position = pixelToCanvas(c.pixel[0], c.pixel[1], c.canvas, c.image);
      assert.deepEqual(position, c.position);
      const back = canvasToPixel(position[0], position[1], c.canvas, c.image);
      assert.deepEqual(back, c.back);
      assert.ok(Math.abs(back[0] - c.pixel[0]) < 1e-9 && Math.abs(back[1] - c.pixel[1]) < 1e-9, `${c.pixel}`);
    }
    for (const c of fixtures.canvas.positions) {
      assert.deepEqual(canvasToPixel(c.position[0], c.position[1], c.canvas, c.image), c.expected, `${c.position}`);
    }
  });
  test("canvasToPixel: outside and non-finite positions give null; edges clamp to the half-pixel margin", () => {
    assert.equal(canvasToPixel(-1, 5, [20, 20], [10, 10]), null);
    assert.equal(canvasToPixel(5, 20.5, [20, 20], [10, 10]), null);
    assert.equal(canvasToPixel(NaN, 5, [20, 20], [10, 10]), null);
    assert.deepEqual(canvasToPixel(0, 20, [20, 20], [10, 10]), [-0.5, 9.5]);
    assert.deepEqual(pixelToCanvas(3.5, 14.5, [20, 20], [20, 20]), [4, 15]);
  });
});

describe("pointScale", () => {
  test("equals HoverLogic.scale(values, point=True) (both readings, default and given cmap, flat maps)", () => {
    const { readings, cases } = fixtures.scales;
    for (const c of cases) {
      assert.deepEqual(pointScale(f32(c.values), c.reading, readings, c.cmap), c.expected,
        `${c.map} ${c.reading} cmap=${c.cmap}`);
    }
  });
  test("known answers", () => {
    const readings = { contribution: { cmap: "RdBu_r", mode: "symmetric", meaning: "c" },
      correspondence: { cmap: "viridis", mode: "minmax", meaning: "m" } };
    assert.deepEqual(pointScale(f32([-1, 0.5]), "contribution", readings),
      { cmap: "RdBu_r", mode: "symmetric", lo: -1, hi: 1, meaning: "c" });
    assert.deepEqual(pointScale(f32([0.25, 0.75]), "correspondence", readings, "gray"),
      { cmap: "gray", mode: "minmax", lo: 0.25, hi: 0.75, meaning: "m" });
  });
});
