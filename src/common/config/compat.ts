/**
 * Upstream compatibility tables: every flag and environment variable llm-d's programs accept, and what pd-router does
 * with it. One table per component (src/<component>/upstream-flags.ts), built by reading upstream's source; the loader
 * accepts every name in it, so a manifest written for llm-d runs with only the image swapped.
 *
 * Each entry has a status:
 * - implemented: pd-router has an option with this name (or alias) and the same meaning; the entry names it.
 * - maps-to: pd-router has the feature under another name; `apply` sets pd-router's options from the value.
 * - ignored: pd-router lacks the feature; the value is read (and validated), and the process logs one warning at start
 *   naming the flag and what is ignored, unless `harmless` says the value asks for what pd-router does anyway
 *   (`--enable-pprof=false`, `--metrics-endpoint-auth=false`).
 * Wiring a feature later is a one-line change of an entry from `ignored` to `maps-to` (or to `implemented` once the
 * option exists).
 */
import { envName, flagName } from './names.js';
import type { OptionSpec } from './option-types.js';

/** How pd-router treats an upstream flag. */
export type CompatStatus = 'implemented' | 'maps-to' | 'ignored';

/** Where a compatibility value came from; ranks as the loader's precedence (flag > file > env > default). */
export type CompatSource = 'flag' | 'file' | 'env';

/** Sets pd-router option values from an upstream flag, honouring precedence (see CompatEntry.apply). */
export interface CompatSetter {
  /** The current value of a pd-router option. */
  get(key: string): unknown;
  /**
   * Sets a pd-router option unless something of higher precedence set it: a pd-router flag beats an upstream flag (a
   * pd-router name is the more specific), an upstream flag beats a file, env or default value, and among upstream names
   * the later table entry wins.
   */
  set(key: string, value: unknown): void;
  /** Adds items to a list option whatever its source (upstream's deprecated boolean TLS flags append to the list). */
  union(key: string, items: readonly string[]): void;
  /** The parsed value of another upstream flag or variable of the same table, when it was given. */
  given(name: string): unknown;
}

/** One upstream flag: how pd-router treats it. */
export interface CompatEntry {
  status: CompatStatus;
  /** Upstream releases (keys of CompatTable.releases) whose program reads this name. */
  releases: readonly string[];
  /** implemented: the pd-router option key this name is the flag, alias or environment variable of. */
  option?: string;
  /** implemented without an option: what reads it (a variable a library reads, such as KUBECONFIG). */
  via?: string;
  /** maps-to / ignored: how the value is read and validated; its description is shown in --help. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
  spec?: OptionSpec<any>;
  /** maps-to: the pd-router flag(s) it drives, for --help and the README. */
  mapsTo?: string;
  /** maps-to: sets pd-router's options from the value. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
  apply?: (value: any, set: CompatSetter) => void;
  /** ignored: what pd-router does instead, and why. */
  reason?: string;
  /** ignored: true when the value asks for what pd-router does anyway, so nothing is lost and nothing is warned. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
  harmless?: (value: any) => boolean;
  /** One-letter form (`-v`), as pflag's shorthand. */
  shorthand?: string;
  /** Upstream marks the flag deprecated (pflag hides it from upstream's own --help). */
  deprecated?: string;
}

/** An upstream binary's flags and the releases they come from. */
export interface CompatTable {
  /** Upstream release label -> what it is (module and version). */
  releases: Record<string, string>;
  /** Upstream flag name (without dashes) -> entry. */
  flags: Record<string, CompatEntry>;
  /** Upstream environment variable -> entry. */
  env: Record<string, CompatEntry>;
}

/** An ignored value that was given, for the start-up warning. */
export interface CompatWarning {
  /** `--enable-pprof` or `MORIIO_METRICS_ADDR`. */
  name: string;
  value: unknown;
  source: CompatSource;
  reason: string;
}

/** Builders of compatibility entries: an upstream flag implemented, mapped or ignored. */
export const compat = {
  implemented(option: string | undefined, releases: readonly string[], extra: Partial<CompatEntry> = {}): CompatEntry {
    return { status: 'implemented', option, releases, ...extra };
  },
  mapsTo(
    releases: readonly string[],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
    spec: OptionSpec<any>,
    mapsTo: string,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
    apply: (value: any, set: CompatSetter) => void,
    extra: Partial<CompatEntry> = {},
  ): CompatEntry {
    return { status: 'maps-to', releases, spec, mapsTo, apply, ...extra };
  },

  ignored(
    releases: readonly string[],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
    spec: OptionSpec<any>,
    reason: string,
    extra: Partial<CompatEntry> = {},
  ): CompatEntry {
    return { status: 'ignored', releases, spec, reason, ...extra };
  },
};

/** Counts per status, for the README and the report. */
export function compatCounts(table: CompatTable): Record<'flags' | 'env', Record<CompatStatus, number>> {
  const count = (entries: Record<string, CompatEntry>) => {
    const c: Record<CompatStatus, number> = { implemented: 0, 'maps-to': 0, ignored: 0 };
    for (const e of Object.values(entries)) c[e.status]++;
    return c;
  };
  return { flags: count(table.flags), env: count(table.env) };
}

/**
 * Checks a table against the component's options: implemented entries name a real option whose flag, alias or
 * environment variable is the upstream name; the others have a spec and no name of a pd-router option. Thrown at
 * start-up (a programming error), and asserted by the tests.
 */
export function checkCompatTable(
  table: CompatTable,
  options: Record<string, OptionSpec<unknown>>,
  envPrefix: string,
): string[] {
  const problems: string[] = [];
  const nativeFlags = new Map<string, string>();
  for (const [key, spec] of Object.entries(options))
    for (const n of [flagName(key, spec), ...(spec.aliases ?? [])]) nativeFlags.set(n, key);
  const nativeEnv = new Map<string, string>();
  for (const [key, spec] of Object.entries(options))
    for (const n of [envName(envPrefix, flagName(key, spec)), ...(spec.env ?? [])]) nativeEnv.set(n, key);
  const check = (kind: 'flag' | 'env', name: string, compatEntry: CompatEntry, native: Map<string, string>) => {
    const shown = kind === 'flag' ? `--${name}` : name;
    for (const r of compatEntry.releases) if (!(r in table.releases)) problems.push(`${shown}: unknown release ${r}`);
    if (compatEntry.releases.length === 0) problems.push(`${shown}: no release`);
    if (compatEntry.status === 'implemented') {
      if (compatEntry.via !== undefined && compatEntry.option === undefined) return;
      if (!compatEntry.option || !(compatEntry.option in options))
        problems.push(`${shown}: implemented by unknown option ${compatEntry.option}`);
      else if (native.get(name) !== compatEntry.option)
        problems.push(
          `${shown}: not a ${kind === 'flag' ? 'flag or alias' : 'variable'} of option ${compatEntry.option}`,
        );
    } else {
      if (!compatEntry.spec) problems.push(`${shown}: ${compatEntry.status} needs a spec`);
      if (native.has(name)) problems.push(`${shown}: is a pd-router name; mark it implemented`);
      if (compatEntry.status === 'maps-to' && (!compatEntry.apply || !compatEntry.mapsTo))
        problems.push(`${shown}: maps-to needs apply and mapsTo`);
      if (compatEntry.status === 'ignored' && !compatEntry.reason) problems.push(`${shown}: ignored needs a reason`);
    }
  };
  for (const [name, e] of Object.entries(table.flags)) check('flag', name, e, nativeFlags);
  for (const [name, e] of Object.entries(table.env)) check('env', name, e, nativeEnv);
  return problems;
}

const RANK: Record<CompatSource | 'default', number> = { default: 0, env: 1, file: 2, flag: 3 };

/** Upstream names given on one start, with their raw values, as the loader collected them. */
export interface CompatGiven {
  /** Flag name -> raw values in order (flags repeat). */
  flags: Map<string, unknown[]>;
  /** Config-file key -> raw value. */
  file: Map<string, unknown>;
  /** "config file <path>" or "inline configuration", for messages. */
  fileOrigin: string;
  env: NodeJS.ProcessEnv;
}

export interface CompatResult {
  warnings: CompatWarning[];
  /** Upstream names applied, with the pd-router flag they drove (for the effective-options log line). */
  applied: Array<{ name: string; mapsTo: string }>;
}

/**
 * Applies the upstream names given onto pd-router's option values (in table order: flags, then variables), after
 * the native flag > file > env > default resolution. `parse` turns a raw value into the entry's type or throws the
 * loader's error naming the flag or variable.
 */
export function resolveCompat(
  table: CompatTable,
  given: CompatGiven,
  values: Record<string, unknown>,
  sources: Record<string, CompatSource | 'default'>,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an entry holds an option of any value type, as OptionsSpec does
  parse: (spec: OptionSpec<any>, raw: unknown, where: string) => unknown,
): CompatResult {
  type Hit = { name: string; shown: string; entry: CompatEntry; raw: unknown; source: CompatSource };
  const hits: Hit[] = [];
  for (const [name, entry] of Object.entries(table.flags)) {
    if (entry.status === 'implemented') continue;
    const fromFlag = given.flags.get(name);
    if (fromFlag !== undefined) {
      const raw = entry.spec!.kind === 'list' ? fromFlag.map(String) : fromFlag[fromFlag.length - 1];
      hits.push({ name, shown: `--${name}`, entry, raw, source: 'flag' });
    } else if (given.file.has(name)) {
      hits.push({ name, shown: `"${name}" in ${given.fileOrigin}`, entry, raw: given.file.get(name), source: 'file' });
    }
  }
  for (const [name, entry] of Object.entries(table.env)) {
    if (entry.status === 'implemented') continue;
    const raw = given.env[name];
    if (raw !== undefined && raw !== '')
      hits.push({ name, shown: `environment variable ${name}`, entry, raw, source: 'env' });
  }
  // Parse everything first, so a bad value fails before anything is applied, and `given` can see every value.
  const parsed = new Map<string, unknown>();
  const parsedHits = hits.map((hit) => {
    const value = parse(hit.entry.spec!, hit.raw, hit.shown);
    if (!parsed.has(hit.name)) parsed.set(hit.name, value);
    return { ...hit, value };
  });
  const compatRank = new Map<string, number>();
  const warnings: CompatWarning[] = [];
  const applied: CompatResult['applied'] = [];
  for (const h of parsedHits) {
    if (h.entry.status === 'ignored') {
      if (!h.entry.harmless?.(h.value)) {
        warnings.push({
          name: h.source === 'env' ? h.name : `--${h.name}`,
          value: h.value,
          source: h.source,
          reason: h.entry.reason!,
        });
      }
      continue;
    }
    const rank = RANK[h.source];
    const setter: CompatSetter = {
      get: (key) => values[key],
      set: (key, value) => {
        if (rank <= RANK[sources[key] ?? 'default']) return;
        if (rank < (compatRank.get(key) ?? -1)) return;
        values[key] = value;
        compatRank.set(key, rank);
      },
      union: (key, items) => {
        const current = (values[key] as string[] | undefined) ?? [];
        values[key] = [...current, ...items.filter((i) => !current.includes(i))];
      },
      given: (name) => parsed.get(name),
    };
    h.entry.apply!(h.value, setter);
    applied.push({ name: h.source === 'env' ? h.name : `--${h.name}`, mapsTo: h.entry.mapsTo! });
  }
  // One warning per name, however often it was given.
  const seen = new Set<string>();
  return { warnings: warnings.filter((warning) => !seen.has(warning.name) && seen.add(warning.name)), applied };
}
