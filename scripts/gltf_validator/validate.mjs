// Validate one glTF/GLB with the Khronos glTF validator; prints its JSON report, exits 1 on errors.
// Usage: node scripts/gltf_validator/validate.mjs FILE.glb   (after npm install --prefix scripts/gltf_validator)
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const validator = createRequire(import.meta.url)("gltf-validator");
const path = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(await readFile(path)), { uri: path, maxIssues: 100 });
console.log(JSON.stringify(report, null, 1));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
