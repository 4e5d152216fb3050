import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { blocksOf, checkDocs, docFiles } from '../scripts/check-docs.js';

// Every TypeScript snippet of the README and the guides type-checks under the project's strict
// settings, as a user would paste it (scripts/check-docs.ts, also `npm run check:docs`).

describe('the README and the guides', { timeout: 120_000 }, () => {
  it('have TypeScript snippets that type-check under strict', () => {
    assert.ok(blocksOf('README.md').length >= 5, 'the README has its snippets');
    const { blocks, errors } = checkDocs(docFiles());
    assert.ok(blocks > 0);
    assert.deepEqual(errors, [], `snippets that do not type-check:\n${errors.join('\n')}`);
  });
});
