import { InvalidOptionError } from '../../errors.js';

/**
 * The only place Redis keys and channel names are formatted.
 *
 * One breaker is one string (its packed record: common.lua) at `<prefix>{<encoded name>}`:
 * - the prefix comes first, so `SCAN MATCH <prefix>*` and ACL key patterns work;
 * - the encoded name is the hash tag, so every key of a breaker (there is one, and any added
 *   later) lands in one Cluster slot;
 * - the name is encoded as lowercase hex of its UTF-8 bytes. Hex never contains `{` or `}`, so a
 *   name with braces cannot move the hash tag; the encoding is injective, so two names never share
 *   a key; and the hex of a name prefix is a prefix of the hex of the name, so `list(prefix)` is
 *   one `SCAN MATCH`. A name with lone surrogates (not valid UTF-16, so UTF-8 would replace them
 *   with U+FFFD and collide) is encoded as `u` + 4 hex digits per UTF-16 code unit instead, a form
 *   UTF-8 hex never takes.
 */

/**
 * Whether `first`, the first byte of a key's string value (`GETRANGE key 0 0`), marks a circuitry
 * record: common.lua packs every record behind a byte 0xA0 + state * 4 + override (state 0-2).
 */
export function isRecordMarker(first: Buffer | null | undefined): boolean {
  if (first == null || first.length !== 1) return false;
  const b = first[0]!;
  return b >= 0xa0 && b < 0xac;
}

/** The key prefix when none is given. */
export const DEFAULT_PREFIX = 'circuitry:';

/** Suffix of the pub/sub channel on which scripts publish state changes: `<prefix>events`. */
const EVENTS_SUFFIX = 'events';

/** Checks a user-given prefix: a string without `{` or `}` (they would move the hash tag). */
export function validatePrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    const given = typeof prefix === 'string' ? JSON.stringify(prefix) : String(prefix);
    throw new InvalidOptionError(
      'prefix',
      `Expected \`prefix\` to be a string without \`{\` or \`}\`, got \`${given}\` (${typeof prefix})`,
    );
  }
  return prefix;
}

const SURROGATE = /[\uD800-\uDFFF]/;

function isWellFormed(name: string): boolean {
  // Fast path: most names have no surrogates at all.
  if (!SURROGATE.test(name)) return true;
  return Buffer.from(name, 'utf8').toString('utf8') === name;
}

/** Encodes a breaker name (or a name prefix) for use inside a key. */
export function encodeName(name: string): string {
  if (isWellFormed(name)) return Buffer.from(name, 'utf8').toString('hex');
  let out = 'u';
  for (let i = 0; i < name.length; i++) out += name.charCodeAt(i).toString(16).padStart(4, '0');
  return out;
}

/** Decodes what `encodeName` produced; null when `encoded` is not such a string. */
export function decodeName(encoded: string): string | null {
  if (encoded.startsWith('u')) {
    if ((encoded.length - 1) % 4 !== 0 || !/^u[0-9a-f]*$/.test(encoded)) return null;
    let name = '';
    for (let i = 1; i < encoded.length; i += 4)
      name += String.fromCharCode(parseInt(encoded.slice(i, i + 4), 16));
    return name;
  }
  if (encoded.length % 2 !== 0 || !/^[0-9a-f]*$/.test(encoded)) return null;
  return Buffer.from(encoded, 'hex').toString('utf8');
}

/** The key holding one breaker's record (a packed string: common.lua encode). */
export function breakerKey(prefix: string, name: string): string {
  return `${prefix}{${encodeName(name)}}`;
}

/**
 * The sorted set of active reporters (a quorum's `heartbeat`), one for the prefix. Without braces,
 * so `nameFromKey` never takes it for a breaker.
 */
export function reportersKey(prefix: string): string {
  return `${prefix}reporters`;
}

/** The breaker name stored at `key`, or null when `key` is not a breaker key under `prefix`. */
export function nameFromKey(prefix: string, key: string): string | null {
  if (!key.startsWith(prefix) || key[prefix.length] !== '{' || !key.endsWith('}')) return null;
  return decodeName(key.slice(prefix.length + 1, -1));
}

/** The pub/sub channel scripts publish transitions on. */
export function eventsChannel(prefix: string): string {
  return `${prefix}${EVENTS_SUFFIX}`;
}

/**
 * A `SCAN MATCH` pattern for the breakers whose names start with `namePrefix` (the caller still
 * filters by decoded name). A `namePrefix` with lone surrogates matches every breaker key. Names
 * with lone surrogates are only found by an empty `namePrefix` or such a prefix.
 */
export function scanPattern(prefix: string, namePrefix: string): string {
  const encoded = isWellFormed(namePrefix) ? encodeName(namePrefix) : '';
  return `${escapeGlob(prefix)}\\{${encoded}*`;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
