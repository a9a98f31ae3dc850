/** How an option's key becomes its flag and environment variable names. */
import type { OptionSpec } from './option-types.js';

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (text) => `-${text.toLowerCase()}`);
}

export function flagName(key: string, spec: OptionSpec<unknown>): string {
  return spec.flag ?? kebab(key);
}

export function envName(prefix: string, flag: string): string {
  return `${prefix}_${flag.replace(/-/g, '_').toUpperCase()}`;
}
