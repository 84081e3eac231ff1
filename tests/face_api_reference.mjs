// Reference descriptors from face-api.js itself (the npm package's bundle with TensorFlow.js, CPU
// backend), for tests/test_face_model.py: the torch port must give the same numbers.
//
//   node tests/face_api_reference.mjs <face-api folder> <request.json> <reply.json>
//
// request.json: [{"file": raw float32 H x W x 3 (RGB 0..255), "rows": H, "cols": W}, ...]
// reply.json:   [{"descriptor": [128 floats], "input": [150 * 150 * 3 floats]}, ...] where "input" is
// the network input face-api builds from the picture (padded to a square, resized to 150 x 150).
import fs from 'node:fs';
import path from 'node:path';

const [folder, requestPath, replyPath] = process.argv.slice(2);

// The bundle picks its platform when it loads: as a "browser" it needs no Node-only helpers. Nothing
// here draws or fetches, so an empty document is enough.
globalThis.window = globalThis;
globalThis.document = { createElement: () => ({}) };
const silence = console.warn;
console.warn = () => {};
const faceapi = await import(path.resolve(folder, 'face-api.esm.js'));
const tf = faceapi.tf;
await tf.setBackend('cpu');
await tf.ready();
console.warn = silence;

const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'face_recognition_model-weights_manifest.json')));
const shard = fs.readFileSync(path.join(folder, 'face_recognition_model.bin'));
const bytes = shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength);
faceapi.nets.faceRecognitionNet.loadFromWeightMap(tf.io.decodeWeights(bytes, manifest[0].weights));

const reply = [];
for (const item of JSON.parse(fs.readFileSync(requestPath))) {
  const raw = fs.readFileSync(item.file);
  const pixels = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const picture = tf.tensor3d(pixels, [item.rows, item.cols, 3]);
  const netInput = await faceapi.toNetInput(picture);
  const input = netInput.toBatchTensor(150, true);
  const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(picture);
  reply.push({ descriptor: Array.from(descriptor), input: Array.from(input.dataSync()) });
}
fs.writeFileSync(replyPath, JSON.stringify(reply));
