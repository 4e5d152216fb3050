// `npm run docs`: the API reference, as HTML in docs/api/ (not committed). One entry point per
// subpath of package.json's "exports", so the reference shows exactly what a user can import; an
// export without a doc comment fails the build, and so does a type the API uses but no subpath
// exports. A declaration that is not public API (a symbol-keyed hook between modules) is tagged
// `@internal` and left out, and then no public declaration may name it.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const entryPoints = Object.values(pkg.exports)
  .filter((target) => typeof target === 'object' && typeof target.types === 'string')
  .map((target) => target.types.replace(/^\.\/dist\//, './src/').replace(/\.d\.ts$/, '.ts'));

/** @type {Partial<import('typedoc').TypeDocOptions>} */
export default {
  entryPoints,
  out: 'docs/api',
  tsconfig: 'tsconfig.build.json',
  readme: 'none',
  excludePrivate: true,
  excludeInternal: true,
  validation: { notExported: true, invalidLink: true, notDocumented: true },
  treatWarningsAsErrors: false,
  treatValidationWarningsAsErrors: true,
};
