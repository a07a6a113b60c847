// Browser test of the page served by `inbetween serve`: Debian's Chromium, headless, driven by
// playwright-core. Uploads the fixture's two keyframes, sets tiny settings, presses Generate,
// follows the progress and waits until the video element has loaded the finished MP4; then saves a
// screenshot. Then a long job: the time display (elapsed, time left) while its VAE encodes, and
// Cancel, which must show "cancelling…" at once and end in the cancelled state. Exits 0 on
// success, 1 on failure, 77 (skipped) when node_modules/playwright-core or /usr/bin/chromium is
// missing, unless INBETWEEN_REQUIRE_BROWSER=1.
//
//   node tests/server/browser_test.mjs --inbetween build/inbetween [--screenshot out.png]
//        [--model DIR] [--max-area 4096] [--frames 9] [--steps 4]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  check, finish, fixtureDir, launch, loadChromium, option, repo, startServer, stopServer,
} from './browser_common.mjs';

const chromium = await loadChromium();
const fixture = fixtureDir();
const inbetween = option('inbetween', path.join(repo, 'build', 'inbetween'));
const model = option('model', path.join(fixture, 'model'));
const screenshot = option('screenshot', '');
const settings = { max_area: option('max-area', '4096'), frames: option('frames', '9'), steps: option('steps', '4') };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inbetween-browser-'));
const cleanup = [];
let failed = false;

try {
  const { proc, url } = await startServer(inbetween, model, path.join(tmp, 'data'));
  cleanup.push(async () => {
    const code = await stopServer(proc);
    if (code !== 0) throw new Error(`server exit status ${code} after SIGTERM`);
    console.log('ok: server stopped cleanly on SIGTERM');
  });
  console.log(`server at ${url}`);

  const context = await launch(chromium, path.join(tmp, 'profile'));
  cleanup.unshift(() => context.close());
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  await page.goto(url);
  await page.waitForFunction(() => document.querySelector('#model-info').textContent.includes('cpu'));
  check(await page.isDisabled('#generate'), 'Generate is disabled until both frames are chosen');
  check(await page.inputValue('#preset') === 'preview', 'a CPU-only server starts on the quick preview preset');
  check(await page.inputValue('#frames') === '17' && await page.inputValue('#steps') === '10',
    'the preview preset sets 17 frames and 10 steps');
  check((await page.textContent('#clip-length')) === '17 frames = 1.1 s at 16 fps', 'the clip length is shown next to the frames');
  const hints = await page.evaluate(() => [...document.querySelectorAll('.grid .hint')].map((e) => e.textContent).join(' | '));
  check(/prompt/.test(hints) && /Noise schedule/.test(hints), 'guidance and shift have a one-line explanation');
  // Every resolution label fits its menu (text width against the select's inner width).
  await page.click('#advanced summary');
  const cut = await page.evaluate(() => {
    const sel = document.querySelector('#resolution');
    const cs = getComputedStyle(sel);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const room = sel.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 20;  // 20: the arrow
    return [...sel.options].filter((o) => ctx.measureText(o.text).width > room).map((o) => o.text);
  });
  check(cut.length === 0, `the resolution labels are not cut off${cut.length ? ': ' + cut.join(', ') : ''}`);
  await page.click('#advanced summary');

  await page.setInputFiles('#first', path.join(fixture, 'first.png'));
  await page.setInputFiles('#last', path.join(fixture, 'last.png'));
  await page.waitForFunction(() => document.querySelectorAll('.drop-meta').length === 2 &&
    [...document.querySelectorAll('.drop-meta')].every((e) => e.textContent.includes('×')));
  check(await page.isVisible('#drop-first img'), 'the start frame preview is shown');
  await page.waitForFunction(() => /^Estimated time on this server \(cpu\): about .* for \d+×\d+, 17 frames, 10 steps/.test(
    document.querySelector('#estimate').textContent) && !document.querySelector('#estimate').hidden);
  check(true, `the run time is estimated before submitting (${await page.textContent('#estimate')})`);
  check(await page.isHidden('#aspect-warning'), 'no aspect warning for frames of one shape');
  await page.fill('#prompt', 'The camera drifts slowly from the first frame to the last');
  await page.click('#advanced summary');
  await page.selectOption('#resolution', 'area');
  await page.fill('#max_area', settings.max_area);
  await page.fill('#frames', settings.frames);
  await page.fill('#steps', settings.steps);
  await page.fill('#seed', '7');
  await page.selectOption('#solver', 'euler');
  await page.selectOption('#last_frame_fit', 'upstream');
  check(await page.isEnabled('#generate'), 'Generate is enabled with both frames');

  const t0 = Date.now();
  await page.click('#generate');
  await page.waitForFunction(() => /^#job=[0-9a-f]{32}$/.test(location.hash));
  const id = (await page.evaluate(() => location.hash)).slice(5);
  console.log(`job ${id} submitted`);
  const sent = await (await fetch(new URL(`/v1/jobs/${id}`, url))).json();
  check(sent.params.solver === 'euler' && sent.params.last_frame_fit === 'upstream',
    `the solver and last-image fit chosen on the page reach the job (${sent.params.solver}, ${sent.params.last_frame_fit})`);
  await page.waitForFunction(() => {
    const v = document.querySelector('#video');
    return v && v.readyState >= 2 && v.videoWidth > 0;
  }, null, { timeout: 300000, polling: 200 });
  console.log(`video loaded ${((Date.now() - t0) / 1000).toFixed(2)} s after pressing Generate`);
  check(await page.isVisible('#video'), 'the video player is visible');
  check((await page.textContent('#job-state')) === 'done', 'the state badge says done');
  const href = await page.getAttribute('#download', 'href');
  check(href === `/v1/jobs/${id}/video?download=1`, 'the download link points at the video');
  check(requests.some((u) => u.endsWith(`/v1/jobs/${id}/events`)), 'progress came from the event stream');
  check(requests.every((u) => u.startsWith(url) || u.startsWith('blob:') || u.startsWith('data:')),
    'the page loads nothing from elsewhere');
  const dims = await page.evaluate(() => [document.querySelector('#video').videoWidth, document.querySelector('#video').videoHeight]);
  console.log(`video ${dims[0]}x${dims[1]}`);
  const meta = await page.textContent('#video-meta');
  check(/\d+ frames \([\d.]+ s at 16 fps\)/.test(meta) && /waited .*, ran /.test(meta),
    `the video's line gives the clip length and the queue wait apart from the run time (${meta})`);

  // The recent jobs list shows the job as done, with its thumbnails loaded.
  await page.waitForFunction((jobId) => {
    const li = document.querySelector(`.job-list li[data-id="${jobId}"]`);
    return li && li.querySelector('.badge.done') &&
      [...li.querySelectorAll('img')].every((img) => img.complete && img.naturalWidth > 0);
  }, id, { timeout: 30000 });
  check(true, 'the recent jobs list shows the finished job');

  // Downloading returns the same MP4 the server stored.
  const res = await page.request.get(url.replace(/\/$/, '') + href);
  const body = await res.body();
  check(res.status() === 200 && body.subarray(4, 8).toString() === 'ftyp', 'the download is an MP4');
  check(res.headers()['content-disposition'].startsWith('attachment'), 'the download is sent as an attachment');

  await page.evaluate(() => { const v = document.querySelector('#video'); v.pause(); v.currentTime = 0; });
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  }

  // A long job (257 frames: the VAE encodes 65 chunks): the clock while it runs, then Cancel.
  await page.evaluate(() => { document.querySelector('#advanced').open = true; });
  await page.selectOption('#resolution', 'area');
  await page.fill('#max_area', '57600');
  await page.fill('#frames', '257');
  await page.fill('#steps', '2');
  check(await page.inputValue('#preset') === 'custom', 'changed settings switch the preset to custom');
  await page.click('#generate');
  await page.waitForFunction((first) => /^#job=[0-9a-f]{32}$/.test(location.hash) && location.hash.slice(5) !== first, id);
  await page.waitForFunction(() => /elapsed · about .* left/.test(document.querySelector('#progress-eta').textContent) &&
    /Encoding the frames/.test(document.querySelector('#progress-stage').textContent), null, { timeout: 120000, polling: 100 });
  const eta1 = await page.textContent('#progress-eta');
  await page.waitForTimeout(2100);
  const eta2 = await page.textContent('#progress-eta');
  const secs = (t) => { const m = /^(?:(\d+) min )?(\d+) s elapsed/.exec(t); return m ? Number(m[1] || 0) * 60 + Number(m[2]) : NaN; };
  check(secs(eta2) >= secs(eta1) + 1, `the elapsed time moves while the VAE encodes ('${eta1}' then '${eta2}')`);
  check(/left in this stage/.test(eta2), `the time left is shown during the VAE encode ('${eta2}')`);
  // Cancel: the page says so before the server has answered.
  await page.route('**/v1/jobs/*', async (route) => {
    if (route.request().method() === 'DELETE') await new Promise((r) => setTimeout(r, 1500));  // a slow answer
    await route.continue();
  });
  const tc = Date.now();
  await page.click('#cancel');
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'cancelling…' &&
    document.querySelector('#cancel').disabled && document.querySelector('#cancel').textContent === 'Cancelling…' &&
    /^Cancelling…/.test(document.querySelector('#progress-stage').textContent), null, { timeout: 1000, polling: 20 });
  check(Date.now() - tc < 1000, `"cancelling…" is shown at once (${Date.now() - tc} ms, the DELETE answer takes 1.5 s)`);
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'cancelled', null, { timeout: 30000 });
  const cancelText = await page.textContent('#job-error');
  check(/The job was cancelled\. \(waited .*, ran .*\)/.test(cancelText),
    `the cancelled job says so, with its queue wait and run time (${cancelText}, ${((Date.now() - tc) / 1000).toFixed(2)} s after Cancel)`);
  check(await page.isHidden('#progress-box'), 'the progress box is gone after the cancel');
  await page.unroute('**/v1/jobs/*');

  check(problems.length === 0, `no page errors${problems.length ? ': ' + problems.join('; ') : ''}`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack || e}`);
}
await finish('browser test', failed, cleanup, tmp);
