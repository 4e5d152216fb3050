/**
 * How this repository launches Chromium (Debian's `chromium`, driven by playwright-core): the
 * dashboard's browser test and `npm run demo:image` both use it.
 */

/** Where Chromium is: `CHROMIUM_PATH`, else Debian's package. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless, no sandbox (CI runs as root), no GPU, nothing fetched in the background. */
export const CHROMIUM_FLAGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
