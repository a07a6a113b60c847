// The page's logic: drop zones with previews, the job form (two frames, or a story: a strip of
// keyframes with a prompt per gap), progress from the job's event stream (EventSource), the video
// player, and the list of recent jobs. Talks only to this server's /v1 API.
'use strict';

const $ = (id) => document.getElementById(id);
// The pipeline's stages in the order they run (the names of its timings), with the share of the
// bar each one fills. `image` and `load` are the names of older servers' jobs.
const STAGES = {
  images: ['Reading the images', 0, 0.01],
  image: ['Reading the images', 0, 0.01],
  text: ['Encoding the prompt', 0.01, 0.04],
  clip: ['Encoding the images (CLIP)', 0.04, 0.06],
  'vae-encode': ['Encoding the frames (VAE)', 0.06, 0.14],
  'load-dit': ['Loading the diffusion model', 0.14, 0.16],
  load: ['Loading the diffusion model', 0.14, 0.16],
  denoise: ['Denoising', 0.16, 0.84],
  'vae-decode': ['Decoding the video (VAE)', 0.84, 0.99],
  write: ['Writing the MP4', 0.99, 1.0],
};
const FINAL = new Set(['done', 'failed', 'cancelled']);
// The presets of the form; a CPU-only server starts on the quick preview.
const PRESETS = {
  preview: { resolution: '99840', frames: 17, steps: 10 },
  full: { resolution: '921600', frames: 81, steps: 50 },
};

const state = {
  apiKey: localStorage.getItem('inbetween.apiKey') || '',
  files: { first: null, last: null },
  dims: { first: null, last: null },
  current: null,      // id of the job shown on the right
  shown: 0,           // its progress bar's fill (only grows: stages may report out of order)
  source: null,       // its EventSource
  job: null,          // its last known state, and when it arrived (for the ticking clock)
  jobAt: 0,
  cancelling: false,  // Cancel was pressed for it
  listTimer: null,
  estimateTimer: null,
  device: '',
  story: false,       // the form makes a story (POST /v1/stories) instead of a two-frame job
  keys: [],           // the story's keyframes in order: { file, url, w, h }
  gapPrompts: [],     // the prompt of each gap (segment), by position
  dragFrom: -1,       // the keyframe being dragged
};
const MAX_KEYFRAMES = 16;

// ---- API -------------------------------------------------------------------------------------

function withKey(url) {
  if (!state.apiKey) return url;
  return url + (url.includes('?') ? '&' : '?') + 'api_key=' + encodeURIComponent(state.apiKey);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.apiKey) headers['X-API-Key'] = state.apiKey;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (res.status === 401) {
    $('apikey-form').hidden = false;
    $('apikey').focus();
  }
  if (!res.ok) {
    const err = new Error((body && body.error) || `HTTP ${res.status}`);
    err.status = res.status;
    err.field = body && body.field;
    throw err;
  }
  return body;
}

// ---- Formatting ------------------------------------------------------------------------------

function duration(s) {
  if (s == null || s < 0 || !isFinite(s)) return '';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// "5.1 s" for 81 frames at 16 fps.
function clipLength(frames, fps) {
  if (!(frames > 0) || !(fps > 0)) return '';
  const s = frames / fps;
  return s < 60 ? `${s.toFixed(1)} s` : duration(s);
}

function ago(unix) {
  const s = Date.now() / 1000 - unix;
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(unix * 1000).toLocaleDateString();
}

function progressOf(job) {
  if (job.state === 'done') return 1;
  if (job.state !== 'running') return 0;
  const st = STAGES[job.stage];
  if (!st) return 0;
  const within = job.total > 0 ? Math.min(job.step / job.total, 1) : 0;
  const p = st[1] + (st[2] - st[1]) * within;
  // A story: each segment fills its share of the bar.
  return job.segments > 0 ? (Math.max(job.segment - 1, 0) + p) / job.segments : p;
}

function stageText(job) {
  switch (job.state) {
    case 'queued':
      return job.queue_position ? `Waiting in the queue (position ${job.queue_position})` : 'Waiting in the queue';
    case 'running': {
      const st = STAGES[job.stage];
      const name = st ? st[0] : (job.stage || 'Starting');
      const seg = job.segments > 0 ? `Segment ${job.segment}/${job.segments} · ` : '';
      return seg + (job.total > 1 ? `${name} · step ${job.step}/${job.total}` : name);
    }
    case 'done': return `Finished: ${waitedRan(job)}`;
    case 'failed': return 'Failed';
    default: return 'Cancelled';
  }
}

// "waited 3 min 2 s, ran 34 s": the queue wait apart from the run time.
function waitedRan(job) {
  const parts = [];
  if (job.started && job.created) parts.push(`waited ${duration(Math.max(0, job.started - job.created)) || '0 s'}`);
  if (job.started && job.finished) parts.push(`ran ${duration(Math.max(0, job.finished - job.started)) || '0 s'}`);
  return parts.join(', ');
}

// The right-hand side of the progress line: elapsed time and time left, ticking between events.
function timeText(job) {
  const since = (Date.now() - state.jobAt) / 1000;
  if (job.state === 'queued') {
    const waited = job.created ? Math.max(0, Date.now() / 1000 - job.created) : 0;
    return waited >= 1 ? `waiting ${duration(waited)}` : '';
  }
  if (job.state !== 'running') return '';
  const parts = [`${duration((job.elapsed_s || 0) + since) || '0 s'} elapsed`];
  if (job.remaining_s != null) parts.push(`about ${duration(Math.max(1, job.remaining_s - since))} left`);
  else if (job.stage_remaining_s != null) parts.push(`about ${duration(Math.max(1, job.stage_remaining_s - since))} left in this stage`);
  return parts.join(' · ');
}

// ---- Drop zones ------------------------------------------------------------------------------

function setupDrop(which) {
  const zone = $(`drop-${which}`);
  const input = $(which);
  const show = (file) => {
    if (!file) return;
    if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
      showFormError(`${which === 'first' ? 'Start' : 'End'} frame: use a PNG, JPEG or WebP image`, which);
      return;
    }
    clearFormError();
    state.files[which] = file;
    const img = zone.querySelector('img');
    if (img.src) URL.revokeObjectURL(img.src);
    img.onload = () => {
      state.dims[which] = { w: img.naturalWidth, h: img.naturalHeight };
      zone.querySelector('.drop-meta').textContent = `${img.naturalWidth}×${img.naturalHeight} · ${(file.size / 1024).toFixed(0)} KiB`;
      checkAspect();
      scheduleEstimate();
    };
    img.src = URL.createObjectURL(file);
    img.hidden = false;
    zone.classList.add('filled');
    updateGenerate();
  };
  input.addEventListener('change', () => show(input.files[0]));
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) show(file);
  });
}

function checkAspect() {
  const a = state.dims.first, b = state.dims.last;
  const box = $('aspect-warning');
  if (!a || !b) { box.hidden = true; return; }
  const ra = a.w / a.h, rb = b.w / b.h;
  if (Math.abs(ra - rb) / ra > 0.01) {
    box.textContent = `The frames have different aspect ratios (${ra.toFixed(3)} and ${rb.toFixed(3)}): ` +
      'the end frame will be scaled and centre-cropped to the start frame\'s shape.';
    box.hidden = false;
  } else {
    box.hidden = true;
  }
}

function updateGenerate() {
  $('generate').disabled = state.story ? !(state.keys.length >= 2 && state.keys.length <= MAX_KEYFRAMES)
    : !(state.files.first && state.files.last);
}

// ---- Form ------------------------------------------------------------------------------------

function clearFormError() {
  $('form-error').hidden = true;
  document.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
}

function showFormError(message, field) {
  $('form-error').textContent = message;
  $('form-error').hidden = false;
  if (field) {
    const el = document.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (el) {
      el.classList.add('invalid');
      if (el.closest('details')) el.closest('details').open = true;
    }
  }
}

function onResolutionChange() {
  const v = $('resolution').value;
  $('area-field').hidden = v !== 'area';
  $('size-field').hidden = v !== 'size';
}

function applyPreset(name) {
  const p = PRESETS[name];
  $('preset').value = PRESETS[name] ? name : 'custom';
  if (!p) return;
  $('resolution').value = p.resolution;
  $('frames').value = String(p.frames);
  $('steps').value = String(p.steps);
  onResolutionChange();
  updateHints();
}

// The preset that the fields match now ("custom" when none).
function matchPreset() {
  for (const [name, p] of Object.entries(PRESETS)) {
    if ($('resolution').value === p.resolution && Number($('frames').value) === p.frames &&
        Number($('steps').value) === p.steps) return name;
  }
  return 'custom';
}

function updateHints() {
  const frames = Number($('frames').value), fps = Number($('fps').value);
  const len = clipLength(frames, fps);
  $('clip-length').textContent = len ? `${frames} frames = ${len} at ${fps} fps` : '';
  scheduleEstimate();
}

// ---- Estimate --------------------------------------------------------------------------------

// The query of GET /v1/estimate for the form's settings (or a preset's), null when incomplete.
function estimateQuery(preset) {
  const q = new URLSearchParams();
  const d = state.story ? state.keys[0] : state.dims.first;
  if (d && d.w) q.set('image', `${d.w}x${d.h}`);
  const res = preset ? preset.resolution : $('resolution').value;
  if (res === 'size') {
    if (!/^\d+[xX]\d+$/.test($('size').value.trim())) return null;
    q.set('size', $('size').value.trim());
  } else {
    const area = res === 'area' ? $('max_area').value.trim() : res;
    if (!area) return null;
    q.set('max_area', area);
  }
  q.set('frames', String(preset ? preset.frames : $('frames').value));
  q.set('steps', String(preset ? preset.steps : $('steps').value));
  q.set('guidance', $('guidance').value || '5');
  return q;
}

function scheduleEstimate() {
  clearTimeout(state.estimateTimer);
  state.estimateTimer = setTimeout(updateEstimate, 250);
}

// "About 4 min on this server (cpu)", and a warning with the quick preview's time when long.
async function updateEstimate() {
  const box = $('estimate');
  const q = estimateQuery(null);
  if (!q || !state.device) { box.hidden = true; return; }
  try {
    const e = await api(`/v1/estimate?${q}`);
    const n = state.story ? Math.max(storySegments(), 1) : 1;  // a story runs one generation a segment
    e.seconds *= n;
    const long = e.seconds > 600;
    let text = `Estimated time on this server (${e.device}): about ${duration(Math.max(1, e.seconds))} for ` +
      `${e.width}×${e.height}, ${q.get('frames')} frames` + (n > 1 ? ` × ${n} segments` : '') +
      `, ${q.get('steps')} steps` + (e.measured ? '' : ' (a rough guess until a job has run)');
    if (long && $('preset').value !== 'preview') {
      const p = await api(`/v1/estimate?${estimateQuery(PRESETS.preview)}`);
      text += `. That is long: the Quick preview preset takes about ${duration(Math.max(1, p.seconds * n))}.`;
    } else if (long) {
      text += '. That is long on this device.';
    }
    box.textContent = text;
    box.classList.toggle('warning', long);
    box.hidden = false;
  } catch (_) {
    box.hidden = true;
  }
}

async function submitJob(e) {
  e.preventDefault();
  clearFormError();
  const form = new FormData();
  const prompt = $('prompt').value.trim();
  if (state.story) {
    appendStory(form, prompt);
  } else {
    form.append('first', state.files.first);
    form.append('last', state.files.last);
  }
  if (prompt) form.append('prompt', prompt);
  const neg = $('negative_prompt').value.trim();
  if (neg) form.append('negative_prompt', neg);
  const res = $('resolution').value;
  if (res === 'size') form.append('size', $('size').value.trim());
  else form.append('max_area', res === 'area' ? $('max_area').value.trim() : res);
  for (const f of ['frames', 'steps', 'guidance', 'shift', 'fps']) form.append(f, $(f).value.trim());
  form.append('solver', $('solver').value);
  form.append('last_frame_fit', $('last_frame_fit').value);
  const seed = $('seed').value.trim();
  if (seed) form.append('seed', seed);

  const button = $('generate');
  button.disabled = true;
  button.textContent = 'Uploading…';
  try {
    const job = await api(state.story ? '/v1/stories' : '/v1/jobs', { method: 'POST', body: form });
    showJob(job.id);
    refreshList();
  } catch (err) {
    if (err.status === 429) showFormError('The queue is full. Try again in a little while.');
    else showFormError(err.message, err.field);
  } finally {
    button.textContent = 'Generate';
    updateGenerate();
  }
}

// ---- The job on the right --------------------------------------------------------------------

function showJob(id) {
  if (state.source) { state.source.close(); state.source = null; }
  state.current = id;
  state.shown = 0;
  state.cancelling = false;
  $('cancel').disabled = false;
  $('cancel').textContent = 'Cancel';
  if (location.hash !== `#job=${id}`) history.replaceState(null, '', `#job=${id}`);
  $('result-empty').hidden = true;
  $('video-box').hidden = true;
  $('job-error').hidden = true;
  $('video').removeAttribute('src');
  renderJob({ id, state: 'queued', stage: '', step: 0, total: 0 });
  const source = new EventSource(withKey(`/v1/jobs/${id}/events`));
  state.source = source;
  source.onmessage = (ev) => {
    const job = JSON.parse(ev.data);
    if (state.current !== job.id) return;
    renderJob(job);
    if (FINAL.has(job.state)) {
      source.close();
      refreshList();
      scheduleEstimate();  // the server now knows its speeds better
    }
  };
  source.addEventListener('shutdown', () => {
    source.close();
    $('progress-stage').textContent = 'The server is shutting down; this job continues after its restart.';
  });
  source.onerror = () => {
    // EventSource reconnects by itself; if it gave up (or the server had no stream to spare:
    // 503), poll the job until it ends.
    if (source.readyState !== EventSource.CLOSED) return;
    const poll = () => {
      if (state.current !== id || state.source !== source) return;
      api(`/v1/jobs/${id}`).then((job) => {
        renderJob(job);
        if (FINAL.has(job.state)) refreshList();
        else setTimeout(poll, 2000);
      }).catch(() => setTimeout(poll, 5000));
    };
    poll();
  };
  document.querySelectorAll('.job-list li').forEach((li) => li.classList.toggle('selected', li.dataset.id === id));
}

function renderJob(job) {
  state.job = job;
  state.jobAt = Date.now();
  const running = job.state === 'queued' || job.state === 'running';
  const cancelling = running && (state.cancelling || job.cancel_requested);
  const badge = $('job-state');
  badge.hidden = false;
  badge.textContent = cancelling ? 'cancelling…' : job.state;
  badge.className = `badge ${cancelling ? 'cancelling' : job.state}`;
  $('progress-box').hidden = !running;
  if (running) {
    const p = Math.max(progressOf(job), state.shown);
    state.shown = p;
    $('progress-fill').style.width = `${(p * 100).toFixed(1)}%`;
    $('progress').setAttribute('aria-valuenow', String(Math.round(p * 100)));
    $('progress-stage').textContent = cancelling ? `Cancelling… (${stageText(job)})` : stageText(job);
    $('progress-eta').textContent = timeText(job);
    $('progress-time').textContent = job.state === 'running' && job.started && job.created && job.started - job.created >= 1
      ? `waited ${duration(job.started - job.created)} in the queue` : '';
    if (cancelling) {
      $('cancel').disabled = true;
      $('cancel').textContent = 'Cancelling…';
    }
  }
  if (job.state === 'failed' || job.state === 'cancelled') {
    const times = waitedRan(job);
    $('job-error').textContent = (job.state === 'failed' ? `The job failed: ${job.error}` : 'The job was cancelled.') +
      (times ? ` (${times})` : '');
    $('job-error').hidden = false;
  }
  if (job.state === 'done' && $('video-box').hidden) {
    const url = `/v1/jobs/${job.id}/video`;
    $('video').src = withKey(url);
    $('download').href = withKey(url + '?download=1');
    $('download').setAttribute('download', `inbetween-${job.id.slice(0, 8)}.mp4`);
    const r = job.result || {};
    const story = job.params.story ? ` · a story of ${job.params.story.keyframes} keyframes` : '';
    $('video-meta').textContent = `${r.width}×${r.height} · ${r.frames} frames (${clipLength(r.frames, job.params.fps)} at ` +
      `${job.params.fps} fps)${story} · seed ${r.seed} · ${waitedRan(job)}`;
    $('video-box').hidden = false;
    $('video').play().catch(() => {});
  }
}

async function cancelCurrent() {
  if (!state.current) return;
  // Shown at once; the job stops at its next step or VAE chunk and its event says so.
  state.cancelling = true;
  if (state.job) renderJob(state.job);
  try {
    const job = await api(`/v1/jobs/${state.current}`, { method: 'DELETE' });
    if (job && job.id === state.current) renderJob(job);
  } catch (err) {
    state.cancelling = false;
    $('cancel').disabled = false;
    $('cancel').textContent = 'Cancel';
    $('job-error').textContent = err.message;
    $('job-error').hidden = false;
  }
}

// Between events the clock still moves: elapsed up, time left down.
function tick() {
  const job = state.job;
  if (job && job.id === state.current && (job.state === 'queued' || job.state === 'running'))
    $('progress-eta').textContent = timeText(job);
}

// ---- Recent jobs -----------------------------------------------------------------------------

async function refreshList() {
  clearTimeout(state.listTimer);
  let busy = false;
  try {
    const { jobs } = await api('/v1/jobs?limit=30');
    const list = $('jobs');
    list.replaceChildren();
    $('jobs-empty').hidden = jobs.length > 0;
    for (const job of jobs) {
      busy = busy || !FINAL.has(job.state);
      const li = document.createElement('li');
      li.dataset.id = job.id;
      li.classList.toggle('selected', job.id === state.current);
      const thumbs = document.createElement('div');
      thumbs.className = 'thumbs';
      for (const which of ['first', 'last']) {
        const img = document.createElement('img');
        img.loading = 'lazy';
        img.alt = '';
        img.src = withKey(`/v1/jobs/${job.id}/frames/${which}`);
        thumbs.append(img);
      }
      const text = document.createElement('div');
      text.className = 'job-text';
      const title = document.createElement('div');
      title.className = 'job-prompt';
      const prompts = job.params.story && job.params.story.prompts.length ? job.params.story.prompts.join(' → ') : '';
      title.textContent = (job.params.story ? `Story of ${job.params.story.keyframes}: ` : '') +
        (prompts || job.params.prompt || '(no prompt)');
      const meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = `${ago(job.created)} · ${job.params.frames} frames (${clipLength(job.params.frames, job.params.fps)})` +
        ` · ${job.params.steps} steps` +
        (job.state === 'running' ? ` · ${Math.round(progressOf(job) * 100)}%` : '');
      text.append(title, meta);
      const badge = document.createElement('span');
      badge.className = `badge ${job.state}`;
      badge.textContent = job.state;
      li.append(thumbs, text, badge);
      li.tabIndex = 0;
      li.addEventListener('click', () => showJob(job.id));
      li.addEventListener('keydown', (e) => { if (e.key === 'Enter') showJob(job.id); });
      list.append(li);
    }
    const m = await api('/v1/model');
    $('queue-info').textContent = `${m.queue.running ? '1 running' : 'idle'} · ${m.queue.queued}/${m.queue.max_queue} waiting`;
  } catch (_) {
    // shown by api() where it matters (401); try again later
  }
  state.listTimer = setTimeout(refreshList, busy ? 3000 : 15000);
}

async function loadModel() {
  try {
    const m = await api('/v1/model');
    $('model-info').textContent = m.model.includes(m.device) ? m.model : `${m.model} · ${m.device}`;
    // A CPU takes hours for the full settings: start from the quick preview there.
    const first = !state.device;
    state.device = m.device;
    if (first && m.device === 'cpu' && $('preset').value === 'full') applyPreset('preview');
    scheduleEstimate();
  } catch (err) {
    $('model-info').textContent = err.status === 401 ? 'API key needed' : 'server unreachable';
  }
}

// ---- Stories: the keyframe strip ---------------------------------------------------------------

function storySegments() {
  const n = state.keys.length;
  return n < 2 ? 0 : ($('loop').checked ? n : n - 1);
}

function setMode(story) {
  state.story = story;
  $('mode-pair').classList.toggle('selected', !story);
  $('mode-story').classList.toggle('selected', story);
  $('mode-pair').setAttribute('aria-pressed', String(!story));
  $('mode-story').setAttribute('aria-pressed', String(story));
  $('pair-frames').hidden = story;
  $('story-box').hidden = !story;
  $('aspect-warning').hidden = true;
  if (!story) checkAspect();
  clearFormError();
  updateGenerate();
  scheduleEstimate();
}

function addKeyframes(files) {
  for (const file of files) {
    if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
      showFormError(`${file.name}: use a PNG, JPEG or WebP image`, 'keyframes');
      continue;
    }
    if (state.keys.length >= MAX_KEYFRAMES) {
      showFormError(`A story takes at most ${MAX_KEYFRAMES} keyframes`, 'keyframes');
      break;
    }
    const key = { file, url: URL.createObjectURL(file), w: 0, h: 0 };
    state.keys.push(key);
    const img = new Image();
    img.onload = () => { key.w = img.naturalWidth; key.h = img.naturalHeight; renderStrip(); scheduleEstimate(); };
    img.src = key.url;
  }
  renderStrip();
}

function moveKeyframe(from, to) {
  if (from === to || from < 0 || to < 0) return;
  const [key] = state.keys.splice(from, 1);
  state.keys.splice(to, 0, key);
  renderStrip();
  scheduleEstimate();
}

// The strip: keyframe, gap (its prompt), keyframe, ...; with loop one more gap back to the first.
function renderStrip() {
  const strip = $('strip');
  strip.replaceChildren();
  const n = state.keys.length, segments = storySegments();
  state.gapPrompts.length = Math.max(state.gapPrompts.length, segments);
  state.keys.forEach((key, i) => {
    const li = document.createElement('li');
    li.className = 'key';
    li.draggable = true;
    li.dataset.index = String(i);
    li.title = `${key.file.name}${key.w ? ` · ${key.w}×${key.h}` : ''} (drag to reorder)`;
    const img = document.createElement('img');
    img.alt = `keyframe ${i + 1}`;
    img.src = key.url;
    const num = document.createElement('span');
    num.className = 'num';
    num.textContent = String(i + 1);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = '×';
    remove.setAttribute('aria-label', `remove keyframe ${i + 1}`);
    remove.addEventListener('click', () => {
      URL.revokeObjectURL(key.url);
      state.keys.splice(i, 1);
      renderStrip();
      scheduleEstimate();
    });
    li.addEventListener('dragstart', (e) => { state.dragFrom = i; li.classList.add('dragging'); e.dataTransfer.effectAllowed = 'move'; });
    li.addEventListener('dragend', () => li.classList.remove('dragging'));
    li.addEventListener('dragover', (e) => { if (state.dragFrom >= 0) { e.preventDefault(); li.classList.add('over'); } });
    li.addEventListener('dragleave', () => li.classList.remove('over'));
    li.addEventListener('drop', (e) => {
      e.preventDefault();
      e.stopPropagation();
      const from = state.dragFrom;
      state.dragFrom = -1;
      moveKeyframe(from, i);
    });
    li.append(img, num, remove);
    strip.append(li);
    if (i < segments) strip.append(gapItem(i, i + 1, (i + 1) % n + 1));
  });
  const frames = Number($('frames').value), fps = Number($('fps').value);
  const total = segments > 0 && frames >= 5 ? segments * (frames - 1) + 1 : 0;
  $('story-meta').textContent = n === 0 ? '' : n < 2 ? 'Add at least one more keyframe.'
    : `${n} keyframes, ${segments} segment${segments > 1 ? 's' : ''} of ${frames} frames: ` +
      `${total} frames (${clipLength(total, fps)}). Segment k uses seed S+k.`;
  updateGenerate();
}

function gapItem(k, from, to) {
  const li = document.createElement('li');
  li.className = 'gap';
  const label = document.createElement('label');
  label.textContent = `${from} → ${to}`;
  const input = document.createElement('input');
  input.type = 'text';
  input.className = 'gap-prompt';
  input.maxLength = 2000;
  input.placeholder = 'prompt (optional)';
  input.value = state.gapPrompts[k] || '';
  input.setAttribute('aria-label', `prompt from keyframe ${from} to ${to}`);
  input.addEventListener('input', () => { state.gapPrompts[k] = input.value; });
  label.append(input);
  li.append(label);
  return li;
}

// The story's keyframes in order, and a prompt per segment when any gap has one (the others take
// the prompt above).
function appendStory(form, prompt) {
  for (const key of state.keys) form.append('keyframes', key.file, key.file.name);
  const segments = storySegments();
  const gaps = state.gapPrompts.slice(0, segments).map((p) => (p || '').trim());
  if (gaps.some((p) => p)) for (const p of gaps) form.append('prompts', p || prompt);
  if ($('loop').checked) form.append('loop', 'true');
}

function setupStory() {
  $('mode-pair').addEventListener('click', () => setMode(false));
  $('mode-story').addEventListener('click', () => setMode(true));
  const input = $('keyframe-input'), zone = $('add-key');
  input.addEventListener('change', () => { addKeyframes([...input.files]); input.value = ''; });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer.files.length) addKeyframes([...e.dataTransfer.files]);
  });
  $('loop').addEventListener('change', () => { renderStrip(); scheduleEstimate(); });
  for (const id of ['frames', 'fps']) $(id).addEventListener('input', renderStrip);
}

// ---- Start -----------------------------------------------------------------------------------

function init() {
  setupDrop('first');
  setupDrop('last');
  setupStory();
  $('resolution').addEventListener('change', onResolutionChange);
  $('preset').addEventListener('change', () => applyPreset($('preset').value));
  for (const id of ['resolution', 'frames', 'steps', 'fps', 'max_area', 'size', 'guidance']) {
    $(id).addEventListener('input', () => { $('preset').value = matchPreset(); updateHints(); });
    $(id).addEventListener('change', () => { $('preset').value = matchPreset(); updateHints(); });
  }
  updateHints();
  setInterval(tick, 1000);
  $('job-form').addEventListener('submit', submitJob);
  $('cancel').addEventListener('click', cancelCurrent);
  $('apikey-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.apiKey = $('apikey').value.trim();
    localStorage.setItem('inbetween.apiKey', state.apiKey);
    $('apikey-form').hidden = true;
    loadModel();
    refreshList();
    if (state.current) showJob(state.current);
  });
  loadModel();
  refreshList();
  const m = /^#job=([0-9a-f]{32})$/.exec(location.hash);
  if (m) showJob(m[1]);
}

document.addEventListener('DOMContentLoaded', init);
