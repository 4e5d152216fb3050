// Writes the schema block of docs/postgres.md from src/stores/postgres/schema.ts, the source
// createBreakerSchema() runs. test/postgres/store.test.ts fails when the doc is stale.
import { readFileSync, writeFileSync } from 'node:fs';

import { schemaSql } from '../src/stores/postgres/schema.js';

const path = new URL('../docs/postgres.md', import.meta.url);
const doc = readFileSync(path, 'utf8');
const block = /<!-- schema:start -->\n[\s\S]*?<!-- schema:end -->/;
if (!block.test(doc))
  throw new Error('docs/postgres.md has no <!-- schema:start --> ... <!-- schema:end --> block');
const sql = schemaSql({ schema: 'public', table: 'circuitry_breakers' });
writeFileSync(
  path,
  doc.replace(block, () => `<!-- schema:start -->\n\`\`\`sql\n${sql}\`\`\`\n<!-- schema:end -->`),
);
