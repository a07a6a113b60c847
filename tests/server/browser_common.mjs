// Shared by the browser tests of `inbetween serve`: options, skipping when Chromium or
// playwright-core is missing (exit 77, unless INBETWEEN_REQUIRE_BROWSER=1), starting and stopping
// the server on a free port, launching headless Chromium, and checks that print what they checked.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const chromiumPath = '/usr/bin/chromium';

export function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

export function skip(reason) {
  if (process.env.INBETWEEN_REQUIRE_BROWSER === '1') {
    console.error(`browser test cannot run: ${reason}`);
    process.exit(1);
  }
  console.log(`SKIPPED: ${reason} (run scripts/setup_web.sh)`);
  process.exit(77);
}

// playwright-core's chromium, or a skip.
export async function loadChromium() {
  if (!fs.existsSync(chromiumPath)) skip(`${chromiumPath} not found`);
  try {
    const { chromium } = await import('playwright-core');
    return chromium;
  } catch (e) {
    return skip(`playwright-core not installed (${e.message.split('\n')[0]})`);
  }
}

// The fixture case folder ($INBETWEEN_FIXTURE, relative to the repository root).
export function fixtureDir() {
  const fixture = process.env.INBETWEEN_FIXTURE || '../shared/fixtures/tiny-flf2v';
  return path.isAbsolute(fixture) ? fixture : path.resolve(repo, fixture);
}

export function startServer(inbetween, model, dataDir) {
  return new Promise((resolve, reject) => {
    const proc = spawn(inbetween, ['serve', '--model', model, '--host', '127.0.0.1', '--port', '0',
      '--data-dir', dataDir, '--threads', '2'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start within 120 s')), 120000);
    proc.on('error', reject);
    proc.on('exit', (code) => reject(new Error(`server exited early (${code})`)));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolve({ proc, url: m[1] });
      }
    });
  });
}

export function stopServer(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(proc.exitCode);
    proc.on('exit', (code, signal) => resolve(signal ? `signal ${signal}` : code));
    proc.kill('SIGTERM');
  });
}

export function launch(chromium, profileDir) {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 940 },
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
  console.log(`ok: ${message}`);
}

// The end of a browser test: every cleanup step (each failure counts), the temporary folder
// removed, the verdict printed; exits 0 when nothing failed, else 1.
export async function finish(name, failed, cleanup, tmp) {
  for (const fn of cleanup) {
    try { await fn(); } catch (e) { failed = true; console.error(`FAILED: ${e.message}`); }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(failed ? `${name}: 0 passed, 1 failed` : `${name}: 1 passed, 0 failed`);
  process.exit(failed ? 1 : 0);
}
