/**
 * The import rules of src/ (`npm run lint:imports`, part of `npm run lint` and `npm test`). docs/architecture.md
 * explains the layers.
 *
 * Components sit in tiers, bottom first. A component imports `common` and the components of lower tiers, never one of
 * its own tier or above: the simulator cannot lean on the EPP, the sidecar cannot reach into the gateway, and
 * `common` stands on nothing. Inside a component, a few rules keep the engine below the plugins and the transport
 * (see INTERNAL below). No import cycles anywhere.
 */
/** @type {string[][]} Bottom tier first. */
const TIERS = [
  ['common'],
  ['decider'],
  ['epp', 'sidecar', 'gateway', 'sim', 'loadgen'],
  ['dev'],
  ['tune'],
  ['bin', 'cli.ts'],
];

const component = (name) => (name.endsWith('.ts') ? `^src/${name.replace('.', '\\.')}$` : `^src/${name}/`);

/** One rule per component: what it must not import (its own tier's other members and every higher tier). */
const layerRules = TIERS.flatMap((tier, level) =>
  tier.map((name) => {
    const forbidden = [...tier.filter((other) => other !== name), ...TIERS.slice(level + 1).flat()];
    return {
      name: `layer-${name.replace('.ts', '')}`,
      comment: `${name} may import only ${[...TIERS.slice(0, level).flat()].join(', ') || 'nothing else in src'} (tier ${level}).`,
      severity: 'error',
      from: { path: component(name) },
      to: { path: forbidden.map(component) },
    };
  }),
).filter((rule) => rule.to.path.length > 0);

/** Boundaries inside a component. */
const INTERNAL = [
  {
    name: 'epp-plugins-not-transport',
    comment: 'A plugin works on the parsed request, not on the ext_proc stream that carried it.',
    severity: 'error',
    from: { path: '^src/epp/plugins/' },
    to: { path: '^src/epp/extproc/' },
  },
  {
    name: 'epp-engine-below-plugins',
    comment: 'The data layer, the framework, the prefix index and the scheduler are the engine plugins run on; the engine owns its settings types and knows neither plugins nor the config loader.',
    severity: 'error',
    from: { path: '^src/epp/(datalayer|framework|prefix|scheduling)/' },
    to: { path: '^src/epp/(plugins|config|extproc)/' },
  },
  {
    name: 'sidecar-connectors-independent',
    comment: 'A connector builds on the shared pipeline (pd-context, legs, decode, failures), never on another connector.',
    severity: 'error',
    from: { path: '^src/sidecar/connectors/([^/]+)\\.ts$', pathNot: '^src/sidecar/connectors/index\\.ts$' },
    to: { path: '^src/sidecar/connectors/', pathNot: ['^src/sidecar/connectors/$1\\.ts$'] },
  },
];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make load order matter and hide which module is the lower one.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing fails at run time.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    ...layerRules,
    ...INTERNAL,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
