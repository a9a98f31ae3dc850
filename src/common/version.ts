/** pd-router's version: package.json's `version`, read once from the nearest package.json named pd-router above this file. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** This package's version (package.json). */
export function packageVersion(): string {
  if (cached !== undefined) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pd-router' && typeof pkg.version === 'string') return (cached = pkg.version);
    }
    const parent = path.dirname(dir);
    // Works from src/ and dist/src/, and in the image (/app/package.json); never fails the command over it.
    if (parent === dir) return (cached = 'unknown');
    dir = parent;
  }
}
