import tseslint from 'typescript-eslint';
import layers from './eslint-rules/layers.js';

const hostGlobals = ['Date', 'performance', 'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'clearTimeout', 'clearInterval', 'clearImmediate'].map((name) => ({
  name,
  message: `'${name}' reads or schedules on the host: only src/engine/host/ may use it (determinism).`,
}));
const asyncFs = ['readFile', 'writeFile', 'appendFile', 'open', 'close', 'read', 'write', 'stat', 'lstat', 'fstat', 'readdir', 'mkdir', 'rm', 'unlink', 'rename', 'copyFile', 'access', 'truncate', 'ftruncate', 'fsync', 'promises', 'createReadStream', 'createWriteStream', 'watch', 'watchFile'];
const hostImports = {
  paths: [
    { name: 'fs', importNames: asyncFs, message: 'Async fs completes in host order: use the *Sync variants or src/engine/host/.' },
    { name: 'node:fs', importNames: asyncFs, message: 'Async fs completes in host order: use the *Sync variants or src/engine/host/.' },
    { name: 'fs/promises', message: 'Async fs completes in host order: only src/engine/host/ may use it.' },
    { name: 'node:fs/promises', message: 'Async fs completes in host order: only src/engine/host/ may use it.' },
    { name: 'timers', message: 'Host timers: only src/engine/host/ may use them.' },
    { name: 'node:timers', message: 'Host timers: only src/engine/host/ may use them.' },
    { name: 'timers/promises', message: 'Host timers: only src/engine/host/ may use them.' },
    { name: 'node:timers/promises', message: 'Host timers: only src/engine/host/ may use them.' },
    { name: 'perf_hooks', message: 'Host clock: only src/engine/host/ may use it.' },
    { name: 'node:perf_hooks', message: 'Host clock: only src/engine/host/ may use it.' },
    { name: 'crypto', importNames: ['randomBytes', 'randomInt', 'randomUUID', 'getRandomValues', 'randomFill', 'randomFillSync', 'webcrypto'], message: 'Host randomness: use the seeded RNG streams.' },
    { name: 'node:crypto', importNames: ['randomBytes', 'randomInt', 'randomUUID', 'getRandomValues', 'randomFill', 'randomFillSync', 'webcrypto'], message: 'Host randomness: use the seeded RNG streams.' },
  ],
};
const hostProperties = [
  { object: 'Math', property: 'random', message: 'Math.random is host randomness: use the seeded RNG streams (src/engine/rng.ts).' },
  { object: 'process', property: 'hrtime', message: 'process.hrtime reads the host clock: only src/engine/host/ may use it.' },
  { object: 'process', property: 'nextTick', message: 'process.nextTick schedules on the host: only src/engine/host/ may use it.' },
  { object: 'crypto', property: 'getRandomValues', message: 'Host randomness: use the seeded RNG streams.' },
  { object: 'crypto', property: 'randomUUID', message: 'Host randomness: use the seeded RNG streams.' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'fixtures/**', 'coverage/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    plugins: { tsqemu: layers },
    rules: {
      'tsqemu/layer-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/engine/host/**'],
    rules: {
      'no-restricted-globals': ['error', ...hostGlobals],
      'no-restricted-properties': ['error', ...hostProperties],
      'no-restricted-imports': ['error', hostImports],
    },
  },
  {
    files: ['tests/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
