export { parseDuration, formatDuration, DurationSyntaxError } from './duration.js';
export * as opt from './option-types.js';
export { OptionValueError, formatBytes, type OptionSpec, type OptionKind } from './option-types.js';
export {
  loadOptions,
  renderHelp,
  toArgs,
  defaultValues,
  ConfigError,
  HelpRequested,
  kebab,
  flagName,
  envName,
  programName,
  acceptedFlags,
  parseYaml,
  type CommandDefinition,
  type OptionsSpec,
  type OptionValues,
  type LoadedOptions,
  type ValueSource,
} from './load.js';
export {
  compat,
  compatCounts,
  checkCompatTable,
  resolveCompat,
  type CompatEntry,
  type CompatTable,
  type CompatStatus,
  type CompatWarning,
  type CompatSetter,
} from './compat.js';
