// Mutation testing of the pure core and the reference store: `npm run mutation` (minutes, so not
// part of `npm test`). StrykerJS's tap runner runs each node:test file as `node --import tsx`,
// only the files that cover a mutant. Last run: 96.96% for src/core, 79.76% for memory.ts.
//
// Survivors judged equivalent (no observable behaviour differs):
// - core/describe.ts `value !== null` -> true: JSON.stringify(null) prints `null` as String does.
// - core/reducer.ts bucketAt `buckets.length > 0` and expireLeases `length === 0` early return:
//   allocation and speed shortcuts; currentBucket and the loop do the same on an empty array.
// - core/reducer.ts record's `state === 'half-open' && probes.length > 0`: an open record has no
//   leases and 0 probe successes, and a half-open one never holds successThreshold successes,
//   so the probe loop changes nothing without both.
// - core/reducer.ts recordClosedOutcome `trip.kind === 'consecutive-failures' ? ... :`: a
//   shortcut; shouldTrip reads the same consecutive failures from the window counts.
// - core/reducer.ts NOTHING.probes: open() reads only random and jitterMs of a batch.
// - core/reducer.ts isValidRecord `typeof l/b === 'object'` and isCount `typeof === 'number'`:
//   the checks after them (`!== null`, property types, Number.isSafeInteger) reject the same values.
// - core/window.ts currentBucket `|| buckets.length >= bucketCount`: buckets are distinct and
//   oldest first, so the ones left after the index check number at most bucketCount - 1.
// - core/window.ts windowCounts `-Infinity` for an empty record: nothing is summed either way.
// - stores/memory.ts: `size > 0` guards on the AgingMap maps, `unverified.size` and listener
//   checks are shortcuts of the hot path; the rest of its survivors are untested retention
//   margins (the ageing period), not semantics.

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'tap',
  tap: {
    testFiles: ['test/core/*.test.ts', 'test/stores/memory*.test.ts', 'test/options.test.ts'],
    nodeArgs: ['--import', 'tsx', '--test-reporter=tap', '-r', '{{hookFile}}', '{{testFile}}'],
  },
  mutate: ['src/core/**/*.ts', 'src/stores/memory.ts'],
  coverageAnalysis: 'perTest',
  concurrency: 2,
  reporters: ['clear-text', 'progress', 'html'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['dist', 'coverage', 'reports', 'bench/results', '.tmp'],
  thresholds: { high: 95, low: 90, break: 90 },
};
