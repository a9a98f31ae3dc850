// @ts-check
/**
 * ESLint: typescript-eslint's strict type-checked rules on src/, test/, bench/ and scripts/, plus two rules of this
 * project's own, with the few choices below, each with its reason. Formatting is Prettier's alone
 * (eslint-config-prettier turns off every rule that would disagree with it). `npm run lint` runs this,
 * `prettier --check` and the import rules (.dependency-cruiser.cjs).
 */
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * A parameter names what it holds. One letter is allowed only where it is the convention: i, j and k for indices,
 * and _ for a parameter that is not used. (A catch clause's `e` or `err` is not a parameter.)
 */
const descriptiveParameters = [
  'error',
  { selector: 'parameter', modifiers: ['destructured'], format: null },
  {
    selector: 'parameter',
    format: null,
    custom: { regex: '^(?:[ijk]|_+|_*[A-Za-z$][A-Za-z0-9$_]+)$', match: true },
  },
];

/**
 * `x as unknown as T` switches the type checker off for one value. Each one says why with
 * `// eslint-disable-next-line no-restricted-syntax -- <the reason>` on the line above.
 */
const explainedDoubleCasts = [
  'error',
  {
    selector: "TSAsExpression[expression.type='TSAsExpression'][expression.typeAnnotation.type='TSUnknownKeyword']",
    message:
      '`as unknown as` bypasses the type checker: say why on the line above (eslint-disable-next-line no-restricted-syntax -- <reason>).',
  },
];

/**
 * No getters or setters in object literals in product code: V8 gives every such literal its own hidden class (map),
 * and maps live in the old generation, so a literal built per request keeps that request's objects alive through every
 * young-generation collection until a full one. One in the EPP's decider input promoted ~0.7 MB per scavenge at a single
 * request in flight (bench/results/epp-perf.md, third pass). Use a class (accessors on its prototype) or a plain field.
 */
const noLiteralAccessors = {
  selector: 'ObjectExpression > Property[kind=/^(get|set)$/]',
  message:
    'a getter or setter in an object literal gives each object its own hidden class, kept in the old generation: use a class or a plain field (eslint.config.js says why).',
};

export default defineConfig(
  {
    ignores: [
      'dist/',
      'node_modules/',
      '.cache/',
      'coverage/',
      'bench/results/',
      'test/interop/builds/',
      'load-all-tmp.mjs',
    ],
  },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/naming-convention': descriptiveParameters,
      'no-restricted-syntax': explainedDoubleCasts,
      // `xs[i]!` after a bounds check, `map.get(k)!` after a has(): the assertion states what the code checked, and a
      // fallback value in its place would hide a broken invariant instead of failing on it.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Numbers and booleans read well in messages; objects, unknowns and nullish values still need String() or JSON.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `() => done()` and `(x) => set.add(x)` are the idiom for callbacks whose result nobody reads.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // The compiler runs without noUncheckedIndexedAccess, so `xs[i]` and `record[key]` are typed as present; the
      // checks this rule calls unnecessary are mostly the ones guarding such reads, and values parsed from the wire.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      // An async function without await still turns a throw into a rejection, which callers of close(), stop() and
      // route handlers rely on.
      '@typescript-eslint/require-await': 'off',
      // Header and field names are data: removing one by its computed name is the operation, not a smell.
      '@typescript-eslint/no-dynamic-delete': 'off',
      // @kubernetes/client-node's models (V1Lease, V1TokenReview, ...) are generated classes of public fields only, and
      // its own examples build them as object literals; no method or private state is lost.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: { 'no-restricted-syntax': [...explainedDoubleCasts, noLiteralAccessors] },
  },
  {
    // Tests read parsed JSON answers as `any` and assert on them: the assertion is the type check.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
    },
  },
  {
    files: ['**/*.{js,cjs,mjs}'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { module: 'readonly', require: 'readonly' } },
  },
  prettier,
);
