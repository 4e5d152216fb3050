import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { GENERATED_PATH, renderScriptsModule } from '../../scripts/build-lua.js';

describe('the compiled Lua scripts', () => {
  it('are up to date with src/stores/redis/lua (run `npm run build:lua` after changing a .lua file)', () => {
    assert.equal(readFileSync(GENERATED_PATH, 'utf8'), renderScriptsModule());
  });
});
