// Browser test of the page's stories (POST /v1/stories) in headless Chromium: switches the form to
// a story, adds three keyframes, reorders them by dragging, removes one and adds it back, writes a
// prompt per gap, toggles the loop, generates, follows the segments' progress and plays the
// finished story; the server must have received the keyframes in the new order. Saves a
// screenshot. Exits 0 on success, 1 on failure, 77 when Chromium or playwright-core is missing
// (unless INBETWEEN_REQUIRE_BROWSER=1).
//
//   node tests/server/story_browser_test.mjs --inbetween build/inbetween [--screenshot out.png]
//        [--model DIR] [--keyframes A,B,C] [--max-area 4096] [--frames 9] [--steps 2]
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
const keyframes = option('keyframes', [path.join(fixture, 'first.png'), path.join(fixture, 'last.png'),
  path.join(repo, 'assets', 'first.png')].join(',')).split(',');
const settings = { max_area: option('max-area', '4096'), frames: option('frames', '9'), steps: option('steps', '2') };
const prompts = ['the sun sinks towards the sea', 'night falls over the water', 'the sky clears'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'inbetween-story-browser-'));
const cleanup = [];
let failed = false;

try {
  check(keyframes.length === 3, 'three keyframes to work with');
  const { proc, url } = await startServer(inbetween, model, path.join(tmp, 'data'));
  cleanup.push(async () => {
    const code = await stopServer(proc);
    if (code !== 0) throw new Error(`server exit status ${code} after SIGTERM`);
  });
  const context = await launch(chromium, path.join(tmp, 'profile'));
  cleanup.unshift(() => context.close());
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  const posts = [];
  page.on('request', (r) => { if (r.method() === 'POST') posts.push(new URL(r.url()).pathname); });

  await page.goto(url);
  await page.waitForFunction(() => document.querySelector('#model-info').textContent.includes('cpu'));
  await page.click('#mode-story');
  check(await page.isVisible('#story-box') && await page.isHidden('#pair-frames'), 'the story mode shows the keyframe strip');
  check(await page.isDisabled('#generate'), 'Generate is disabled without keyframes');

  // Three keyframes, in the order given.
  await page.setInputFiles('#keyframe-input', keyframes);
  await page.waitForFunction(() => document.querySelectorAll('#strip .key').length === 3 &&
    [...document.querySelectorAll('#strip .key')].every((k) => / · \d+×\d+/.test(k.title)));
  const order = () => page.evaluate(() => [...document.querySelectorAll('#strip .key')].map((k) => k.title.split(' · ')[0]));
  const names = keyframes.map((k) => path.basename(k));
  check(JSON.stringify(await order()) === JSON.stringify(names), `the strip holds the keyframes in order (${names})`);
  check(await page.locator('#strip .gap-prompt').count() === 2, 'three keyframes have two gaps, each with a prompt field');
  check(await page.isEnabled('#generate'), 'Generate is enabled with three keyframes');

  // Drag the third keyframe onto the first: it becomes the first.
  await page.dragAndDrop('#strip .key[data-index="2"]', '#strip .key[data-index="0"]');
  const moved = [names[2], names[0], names[1]];
  check(JSON.stringify(await order()) === JSON.stringify(moved), `dragging reorders the keyframes (${await order()})`);
  // Remove the last one and add it back: same order again.
  await page.click('#strip .key[data-index="2"] .remove');
  check(await page.locator('#strip .key').count() === 2, 'a keyframe can be removed');
  await page.setInputFiles('#keyframe-input', [keyframes[1]]);
  await page.waitForFunction(() => document.querySelectorAll('#strip .key').length === 3);
  check(JSON.stringify(await order()) === JSON.stringify(moved), 'an added keyframe goes to the end');

  // The loop adds a gap from the last keyframe back to the first.
  await page.check('#loop');
  check(await page.locator('#strip .gap-prompt').count() === 3, 'the loop adds a third gap (3 → 1)');
  await page.uncheck('#loop');
  const gaps = page.locator('#strip .gap-prompt');
  await gaps.nth(0).fill(prompts[0]);
  await gaps.nth(1).fill(prompts[1]);

  await page.click('#advanced summary');
  await page.selectOption('#resolution', 'area');
  await page.fill('#max_area', settings.max_area);
  await page.fill('#frames', settings.frames);
  await page.fill('#steps', settings.steps);
  await page.fill('#seed', '7');
  await page.click('#advanced summary');
  const F = Number(settings.frames);
  const meta = await page.textContent('#story-meta');
  check(meta.includes(`${2 * (F - 1) + 1} frames`), `the strip says how long the story is (${meta})`);

  // Every progress line the page shows while the story runs.
  await page.evaluate(() => {
    window.stageTexts = [];
    new MutationObserver(() => window.stageTexts.push(document.querySelector('#progress-stage').textContent))
      .observe(document.querySelector('#progress-stage'), { childList: true, characterData: true, subtree: true });
  });
  const t0 = Date.now();
  await page.click('#generate');
  await page.waitForFunction(() => /^#job=[0-9a-f]{32}$/.test(location.hash));
  const id = (await page.evaluate(() => location.hash)).slice(5);
  await page.waitForFunction(() => {
    const v = document.querySelector('#video');
    return v && v.readyState >= 2 && v.videoWidth > 0;
  }, null, { timeout: 300000, polling: 200 });
  console.log(`story ${id} played ${((Date.now() - t0) / 1000).toFixed(2)} s after pressing Generate`);
  check(posts.includes('/v1/stories'), 'the page sent the story to POST /v1/stories');
  const texts = await page.evaluate(() => window.stageTexts);
  check(texts.some((t) => /^Segment 2\/2 · /.test(t)), `the progress names the segment (${texts.filter((t) => /Segment/.test(t)).slice(-1)})`);
  const videoMeta = await page.textContent('#video-meta');
  check(videoMeta.includes(`${2 * (F - 1) + 1} frames`) && videoMeta.includes('a story of 3 keyframes'),
    `the video's line gives the story's frames (${videoMeta})`);
  check((await page.textContent('#job-state')) === 'done', 'the state badge says done');

  // The server holds the keyframes in the order of the strip, and a prompt per segment.
  const api = url.replace(/\/$/, '');
  const job = await (await page.request.get(`${api}/v1/jobs/${id}`)).json();
  check(JSON.stringify(job.params.story.prompts) === JSON.stringify(prompts.slice(0, 2)), 'one prompt per segment reached the server');
  const first = await (await page.request.get(`${api}/v1/jobs/${id}/frames/first`)).body();
  check(first.equals(fs.readFileSync(keyframes[2])), 'the dragged keyframe is the story\'s first');
  await page.waitForFunction((jobId) => {
    const li = document.querySelector(`.job-list li[data-id="${jobId}"]`);
    return li && li.querySelector('.badge.done') && /^Story of 3: /.test(li.querySelector('.job-prompt').textContent);
  }, id, { timeout: 30000 });
  check(true, 'the recent jobs list shows the story');

  await page.evaluate(() => { const v = document.querySelector('#video'); v.pause(); v.currentTime = 0.6; });
  await page.waitForTimeout(300);
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  }
  check(problems.length === 0, `no page errors${problems.length ? ': ' + problems.join('; ') : ''}`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack || e}`);
}
await finish('story browser test', failed, cleanup, tmp);
