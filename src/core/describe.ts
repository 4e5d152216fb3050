/**
 * A value as an option error shows it: ``describeValue(-1)`` is `` `-1` (number)``. Pure, so the
 * policy helpers in the core can say what they were given.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'function') return '[function] (function)';
  let shown: string;
  if (typeof value === 'object' && value !== null) {
    try {
      shown = JSON.stringify(value);
    } catch {
      shown = '[object Object]'; // a cycle
    }
  } else {
    // Not JSON for the others: it prints NaN and Infinity as null, and undefined not at all.
    shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  }
  if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  return `\`${shown}\` (${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value})`;
}
