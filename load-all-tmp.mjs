import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadEndpointPickerConfig } from './dist/src/epp/index.js';
const root = 'test/fixtures/upstream-configs';
const walk = (d) => readdirSync(d).flatMap((f) => statSync(path.join(d, f)).isDirectory() ? walk(path.join(d, f)) : [path.join(d, f)]);
for (const f of walk(root).sort()) {
  try { const c = loadEndpointPickerConfig(readFileSync(f, 'utf8')); console.log('LOADS', f.slice(root.length + 1), [...c.profiles.keys()].join(','), c.handler.type, c.warnings.length ? '\n    W: ' + c.warnings.join('\n    W: ') : ''); }
  catch (e) { console.log('FAILS', f.slice(root.length + 1), '\n    E:', e.message); }
}
