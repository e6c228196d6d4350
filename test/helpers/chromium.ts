/**
 * Headless Debian Chromium for the browser suites (test/browser_test.ts,
 * test/browser_consumer_test.ts), through playwright-core: never a downloaded browser.
 *
 * Without Chromium (/usr/bin/chromium, or CHROMIUM_PATH) a suite fails, saying to install
 * Debian's chromium as .ci/run does; SKIP_BROWSER=1 skips it explicitly (one printed line, the
 * tests reported as skipped).
 */
import * as fs from 'fs';
import {chromium} from 'playwright-core';
import type {Browser} from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** WebGL 2 (and everything else) on SwiftShader, with no network chatter. */
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--ignore-gpu-blocklist', '--enable-webgl',
];

/** Adds a WebGPU adapter on SwiftShader's Vulkan (navigator.gpu needs a secure context: http://127.0.0.1 is one). */
export const WEBGPU_ARGS = [
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader',
];

/** Only an explicit SKIP_BROWSER=1 skips a browser suite; a missing Chromium otherwise fails it. */
export const SKIP_BROWSER = process.env.SKIP_BROWSER === '1';

/** `describe`, or `describe.skip` with one line on stderr saying why (`suite` names it there). */
export function describeInBrowser(suite: string): jest.Describe {
  if (!SKIP_BROWSER) return describe;
  // One line, not console.warn's multi-line block, and the tests show as skipped.
  process.stderr.write(`${suite} skipped: SKIP_BROWSER=1\n`);
  return describe.skip;
}

/** Launches headless Chromium with CHROMIUM_ARGS (plus WEBGPU_ARGS with `webgpu`); a missing Chromium is an error that says what to do. */
export async function launchChromium(options: {webgpu?: boolean} = {}): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
        `Chromium not found at ${CHROMIUM}: install Debian's chromium as .ci/run does ` +
        '(apt-get install -y chromium), or set CHROMIUM_PATH; SKIP_BROWSER=1 skips this suite.');
  }
  const args = options.webgpu ? [...CHROMIUM_ARGS, ...WEBGPU_ARGS] : CHROMIUM_ARGS;
  return chromium.launch({executablePath: CHROMIUM, headless: true, args});
}
