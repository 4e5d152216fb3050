/**
 * Records the process warnings emitted while `body` runs instead of printing them, so a test that
 * expects a warning keeps a passing run quiet, and can assert on what was said.
 */
export async function captureWarnings(body: () => Promise<void>): Promise<string[]> {
  const warnings: string[] = [];
  const original = process.emitWarning.bind(process);
  process.emitWarning = (warning: string | Error) => {
    warnings.push(typeof warning === 'string' ? warning : warning.message);
  };
  try {
    await body();
  } finally {
    process.emitWarning = original;
  }
  return warnings;
}
