// Builds calculator_js.wasm: node build.mjs WIT_DIR OUTPUT_FILE (see build.sh).
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';
const source = await readFile('calculator.js', 'utf8');
const { component } = await componentize(source, {
  witPath: process.argv[2],
  worldName: 'calculator',
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(process.argv[3], component);
