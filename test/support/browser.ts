import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';

const run = promisify(execFile);

/** Where Debian's chromium package puts the browser; CHROMIUM_PATH overrides it. */
const chromiumPath = () => process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Debian's Chromium, installed once by the test set-up where it is missing (`apt-get install chromium`, as root;
 * playwright's own browser download cannot reach its servers from a machine with only the package registries).
 */
export async function ensureChromium(): Promise<string> {
  const path = chromiumPath();
  if (executable(path)) return path;
  if (process.getuid?.() !== 0) throw new Error(`the browser tests need Chromium at ${path}: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH`);
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 64 * 1024 * 1024 });
  console.error('[streamgrad tests] installing Debian\'s chromium for the browser tests (once) …');
  await install().catch(async () => {
    await run('apt-get', ['update', '-qq'], { maxBuffer: 64 * 1024 * 1024 });
    await install();
  });
  if (!executable(path)) throw new Error(`apt-get installed chromium, but ${path} is not there`);
  return path;
}

/**
 * Headless Chromium as a person's browser, on loopback only: the flags keep it from reaching for Google's services,
 * which this machine's closed network refuses.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: await ensureChromium(),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}
