// jetmill web page: submit jobs and workflows, watch them run, read results, see the workers and the run limits.
// Plain JavaScript, no build step, no dependencies; talks only to this gateway's /v1 API.
'use strict';

const TOKEN_KEY = 'jetmill.token';
const LIST_EVERY_MS = 1000; // without the live feed
const LIST_RESYNC_MS = 5000; // with it: a periodic re-read only to resync
const WORKERS_EVERY_MS = 2000;
const POLL_JOB_EVERY_MS = 500;
const SCHEDULES_EVERY_MS = 5000;
const COPY_LIMIT = 64 * 1024;
const TERMINAL = new Set(['done', 'failed', 'cancelled']);

const $ = (id) => document.getElementById(id);

const state = {
  filter: '',
  schedule: null, // show only the jobs of this schedule (id), or null for all
  limit: 20,
  cursor: null, // cursor of the page shown (null: newest)
  cursorStack: [], // cursors of the newer pages, for "Newer"
  nextCursor: null,
  cursorSupported: false,
  rows: new Map(), // job id -> <tr>
  openId: null,
  openRecord: null,
  live: null, // AbortController of the open job's SSE stream or poll loop
};

// ---------------------------------------------------------------- HTTP

/** An API answer that was not 2xx; `problem` is the RFC 9457 body when there is one. */
class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    return '';
  }
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function api(method, path, body) {
  const opts = { method, headers: authHeaders(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) opts.body = JSON.stringify(body);
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    showBanner('conn-msg', `Cannot reach the gateway (${e.message}); retrying.`);
    throw e;
  }
  showBanner('conn-msg', '');
  let data = null;
  const ct = resp.headers.get('content-type') || '';
  if (ct.includes('json')) {
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
  }
  noteAuth(resp.status, data);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function showBanner(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

/** Explain 401/403 answers on the page; clear the explanation after a success. */
function noteAuth(status, problem) {
  const detail = problem && problem.detail ? ` The gateway said: “${problem.detail}”` : '';
  if (status === 401) {
    showBanner('auth-msg', token()
      ? `401 Unauthorized: the access token you entered was not accepted. Check it and save it again.${detail}`
      : `401 Unauthorized: this gateway requires an access token. Enter it under “Access token” above and press Save.${detail}`);
  } else if (status === 403) {
    showBanner('auth-msg', `403 Forbidden: your token is valid but may not do this.${detail}`);
  } else if (status < 400) {
    showBanner('auth-msg', '');
  }
}

// ---------------------------------------------------------------- formatting

function fmtDuration(ms) {
  if (ms == null || !isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.floor((ms % 60000) / 1000)} s`;
  if (ms < 86400000) return `${Math.floor(ms / 3600000)} h ${Math.floor((ms % 3600000) / 60000)} min`;
  return `${Math.floor(ms / 86400000)} d ${Math.floor((ms % 86400000) / 3600000)} h`;
}

function duration(job) {
  if (!job.started_at) return '';
  const start = Date.parse(job.started_at);
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return fmtDuration(end - start);
}

function fmtInput(job) {
  let s = typeof job.input === 'string' ? job.input : JSON.stringify(job.input);
  if (job.params && job.params.modulus != null) s += ` mod ${job.params.modulus}`;
  return s.length > 32 ? `${s.slice(0, 30)}…` : s;
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + `.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function pct(p) {
  return `${Math.round((p || 0) * 100)}%`;
}

// ---------------------------------------------------------------- token

function initToken() {
  const input = $('token');
  input.value = token();
  $('token-state').textContent = token() ? 'token set for this tab' : '';
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    try {
      if (v) sessionStorage.setItem(TOKEN_KEY, v);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lasts until reload */ }
    $('token-state').textContent = v ? 'token saved for this tab' : 'no token';
    refreshAll();
  });
  $('token-clear').addEventListener('click', () => {
    input.value = '';
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
    $('token-state').textContent = 'token cleared';
    refreshAll();
  });
}

// ---------------------------------------------------------------- submit form

/** Which form control shows the error for an API `field` such as `input[3]` or `params.modulus`. */
const FIELD_ERRORS = {
  kind: 'kind',
  input: 'input',
  params: 'modulus',
  timeout_secs: 'timeout',
  max_attempts: 'max-attempts',
  priority: 'priority',
  delay: 'delay',
  run_at: 'delay',
};
const CONTROLS = {
  kind: 'f-kind', input: 'f-input', modulus: 'f-modulus', timeout: 'f-timeout',
  'max-attempts': 'f-max-attempts', priority: 'f-priority', delay: 'f-delay',
};

function clearFieldErrors() {
  for (const [name, controlId] of Object.entries(CONTROLS)) {
    $(`err-${name}`).textContent = '';
    $(controlId).removeAttribute('aria-invalid');
  }
  $('err-form').textContent = '';
}

function showProblem(problem, status) {
  const field = problem.field || '';
  const root = field.split(/[.[]/)[0];
  const name = FIELD_ERRORS[root];
  const detail = problem.detail || problem.title || `HTTP ${status}`;
  if (name) {
    const where = field !== root && root !== 'params' ? ` (${field})` : '';
    $(`err-${name}`).textContent = detail + where;
    const control = $(CONTROLS[name]);
    control.setAttribute('aria-invalid', 'true');
    control.focus();
  } else {
    $('err-form').textContent = field ? `${field}: ${detail}` : `${status}: ${detail}`;
  }
}

/** A number when the text is a plain safe integer, else the text itself (the API checks it). */
function numberOrText(text) {
  const t = text.trim();
  if (/^-?\d{1,15}$/.test(t)) return Number(t);
  return t;
}

function buildRequest() {
  const kind = $('f-kind').value;
  const raw = $('f-input').value.trim();
  const body = { kind };
  if (kind === 'sum') {
    body.input = raw === '' ? [] : raw.split(/[\s,]+/).filter(Boolean).map(numberOrText);
  } else {
    body.input = numberOrText(raw);
  }
  const modulus = $('f-modulus').value.trim();
  if (kind === 'fibonacci' && modulus !== '') body.params = { modulus: numberOrText(modulus) };
  const timeout = $('f-timeout').value.trim();
  if (timeout !== '') {
    const n = Number(timeout);
    body.timeout_secs = isFinite(n) ? n : timeout;
  }
  const attempts = $('f-max-attempts').value.trim();
  if (attempts !== '') body.max_attempts = numberOrText(attempts);
  const priority = $('f-priority').value;
  if (priority !== 'normal') body.priority = priority;
  const delay = $('f-delay').value.trim();
  if (delay !== '') body.delay = delay;
  return body;
}

/** Most jobs the gateway takes in one batch (`POST /v1/jobs/batch`). */
const MAX_BATCH = 1000;

/** `a..b` as the input of factorial/fibonacci: one job per n from a to b, as one batch. */
function rangeOf(kind, raw) {
  if (kind === 'sum') return null;
  const m = /^(\d{1,15})\s*\.\.\s*(\d{1,15})$/.exec(raw);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Submit one job per n of `range` as one batch; returns the message to show. */
async function submitRange(body, [a, b]) {
  if (b < a || b - a >= MAX_BATCH) {
    showProblem({ field: 'input', detail: `a range a..b holds 1 to ${MAX_BATCH} numbers, with a ≤ b` }, 422);
    return '';
  }
  const specs = [];
  for (let n = a; n <= b; n++) specs.push({ ...body, input: n });
  const res = await api('POST', '/v1/jobs/batch', specs);
  const refused = res.items.find((i) => !i.id);
  if (refused) {
    showProblem({ field: refused.field, detail: `n = ${a + refused.index}: ${refused.message}` }, refused.code);
  }
  $('submit-msg').dataset.batchId = res.id;
  return `Submitted batch ${res.id}: ${res.accepted} jobs` +
    (res.rejected ? `, ${res.rejected} refused.` : '.');
}

function updateKindHints() {
  const kind = $('f-kind').value;
  $('modulus-field').hidden = kind !== 'fibonacci';
  $('hint-input').textContent = kind === 'sum'
    ? 'Integers separated by commas or spaces, e.g. 1, -2, 123456789012345678901234567890.'
    : 'A whole number n, e.g. 50000; or a..b (e.g. 1000..1099) for one job per n, as one batch.';
}

function initSubmit() {
  $('f-kind').addEventListener('change', updateKindHints);
  updateKindHints();
  $('submit-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors();
    const msg = $('submit-msg');
    msg.textContent = 'Submitting…';
    delete msg.dataset.jobId;
    delete msg.dataset.batchId;
    const btn = $('submit-btn');
    btn.disabled = true;
    try {
      const body = buildRequest();
      const range = rangeOf(body.kind, $('f-input').value.trim());
      if (range) {
        msg.textContent = await submitRange(body, range);
        await loadJobs();
        return;
      }
      const res = await api('POST', '/v1/jobs', body);
      msg.textContent = res.status === 'scheduled'
        ? `Submitted job ${res.id}: scheduled.`
        : `Submitted job ${res.id}.`;
      msg.dataset.jobId = res.id;
      await loadJobs();
    } catch (e) {
      msg.textContent = '';
      if (e instanceof ApiError) showProblem(e.problem, e.status);
      else $('err-form').textContent = `Could not submit: ${e.message}`;
    } finally {
      btn.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- jobs table

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

/**
 * A job id people can tell apart at a glance. Ids are UUIDv7: the first 12 hex digits
 * are the submission time, so jobs of the same minute share them; the last 8 are random.
 */
function shortId(id) {
  return `…${id.slice(-8)}`;
}

function newRow(id) {
  const tr = el('tr', { 'data-id': id });
  const open = el('button', { type: 'button', class: 'link', 'data-action': 'open', 'aria-label': `Open job ${id}`, title: id }, shortId(id));
  open.addEventListener('click', () => openJob(id));
  const cancel = el('button', { type: 'button', class: 'danger', 'data-action': 'cancel', 'aria-label': `Cancel job ${id}` }, 'Cancel');
  cancel.addEventListener('click', () => cancelJob(id));
  const retry = el('button', { type: 'button', 'data-action': 'retry', 'aria-label': `Retry job ${id}`, hidden: '' }, 'Retry');
  retry.addEventListener('click', () => retryJob(id));
  const progress = el('progress', { max: '1', value: '0', 'aria-label': `Progress of job ${id}` });
  const cells = [
    el('td', { 'data-col': 'id' }), el('td', { 'data-col': 'kind' }), el('td', { 'data-col': 'input' }),
    el('td', { 'data-col': 'status' }), el('td', { 'data-col': 'progress' }), el('td', { 'data-col': 'attempts' }),
    el('td', { 'data-col': 'worker' }), el('td', { 'data-col': 'duration' }), el('td', { 'data-col': 'actions' }),
  ];
  cells[0].append(open);
  cells[3].append(el('span', { class: 'status' }));
  cells[4].append(progress, el('span', { class: 'pct' }));
  cells[8].append(cancel, retry);
  tr.append(...cells);
  return tr;
}

function updateRow(tr, job) {
  const cell = (c) => tr.querySelector(`[data-col="${c}"]`);
  tr.dataset.status = job.status;
  cell('kind').textContent = job.kind;
  cell('input').textContent = fmtInput(job);
  const status = cell('status').firstChild;
  status.textContent = job.status;
  status.className = `status status-${job.status}`;
  if (job.error) status.title = job.error;
  // A delayed job says when it is due while it waits.
  let due = cell('status').querySelector('.due');
  if (job.status === 'scheduled' && job.run_at) {
    if (!due) {
      due = el('span', { class: 'due' });
      cell('status').append(' ', due);
    }
    due.textContent = `due ${new Date(job.run_at).toLocaleTimeString()}`;
    due.title = `Starts at ${job.run_at}`;
  } else if (due) {
    due.remove();
  }
  // A result reused from an identical earlier job: nothing was computed for this one.
  let badge = cell('status').querySelector('.cached');
  if (job.cached && !badge) {
    badge = el('span', { class: 'cached', title: 'Result reused from an identical earlier job; nothing was computed' }, 'cached');
    cell('status').append(' ', badge);
  }
  const p = job.status === 'done' ? 1 : (job.progress || 0);
  const bar = cell('progress').querySelector('progress');
  bar.value = p;
  bar.dataset.progress = String(p);
  cell('progress').querySelector('.pct').textContent = pct(p);
  cell('attempts').textContent = String(job.attempts);
  cell('worker').textContent = job.worker || '';
  cell('duration').textContent = duration(job);
  cell('actions').querySelector('[data-action="cancel"]').hidden = TERMINAL.has(job.status);
  cell('actions').querySelector('[data-action="retry"]').hidden = job.status !== 'failed';
  // A failed job is a dead letter until it is retried or purged.
  let dead = cell('status').querySelector('.dead-letter');
  if (job.status === 'failed' && !dead) {
    dead = el('span', { class: 'dead-letter', title: 'Failed for good: a dead letter. Retry runs it again with a fresh attempt budget.' }, 'dead letter');
    cell('status').append(' ', dead);
  } else if (job.status !== 'failed' && dead) {
    dead.previousSibling.remove();
    dead.remove();
  }
}

/** Run a failed job again (`POST /v1/jobs/{id}/retry`). */
async function retryJob(id) {
  try {
    await api('POST', `/v1/jobs/${id}/retry`);
    $('jobs-msg').textContent = `Retrying job ${id}.`;
  } catch (e) {
    $('jobs-msg').textContent = `Could not retry ${id}: ${e.message}`;
  }
  loadJobs();
  if (state.openId === id) {
    try { renderRecord(await api('GET', `/v1/jobs/${id}`)); } catch (_) { /* shown */ }
  }
}

function renderJobs(jobs) {
  const body = $('jobs-body');
  const seen = new Set();
  jobs.forEach((job, i) => {
    seen.add(job.id);
    let tr = state.rows.get(job.id);
    if (!tr) {
      tr = newRow(job.id);
      state.rows.set(job.id, tr);
    }
    updateRow(tr, job);
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [id, tr] of state.rows) {
    if (!seen.has(id)) {
      tr.remove();
      state.rows.delete(id);
    }
  }
  $('jobs-empty').hidden = jobs.length > 0;
  $('jobs-empty').textContent = state.schedule ? 'No jobs of this schedule yet.' : 'No jobs yet.';
}

function renderPager(count) {
  $('prev-page').disabled = state.cursorStack.length === 0 && state.cursor === null;
  if (state.cursorSupported) {
    $('next-page').textContent = 'Older →';
    $('next-page').disabled = !state.nextCursor;
  } else {
    // A gateway without cursors: show more of the newest jobs instead.
    $('next-page').textContent = 'Show more';
    $('next-page').disabled = count < state.limit || state.limit >= 1000;
  }
  const page = state.cursorStack.length + (state.cursor === null ? 1 : 2);
  $('page-info').textContent = state.cursorSupported ? `page ${page}` : `${count} shown`;
}

let listTimer = null;

async function loadJobs() {
  clearTimeout(listTimer);
  try {
    const q = new URLSearchParams({ limit: String(state.limit) });
    if (state.filter) q.set('status', state.filter);
    if (state.schedule) q.set('schedule', state.schedule);
    if (state.cursor) q.set('cursor', state.cursor);
    const data = await api('GET', `/v1/jobs?${q}`);
    let jobs = (data && data.jobs) || [];
    // A gateway that ignores ?status= or ?schedule= still gets the filter applied here.
    if (state.filter) jobs = jobs.filter((j) => j.status === state.filter);
    if (state.schedule) jobs = jobs.filter((j) => j.schedule === state.schedule);
    state.cursorSupported = data != null && Object.prototype.hasOwnProperty.call(data, 'next_cursor');
    state.nextCursor = (data && data.next_cursor) || null;
    renderJobs(jobs);
    renderPager(((data && data.jobs) || []).length);
    $('jobs-msg').textContent = '';
  } catch (e) {
    if (e instanceof ApiError && e.status !== 401) $('jobs-msg').textContent = `Could not list jobs: ${e.message}`;
  } finally {
    listTimer = setTimeout(loadJobs, feed.live ? LIST_RESYNC_MS : LIST_EVERY_MS);
  }
}

// ---------------------------------------------------------------- live feed

/** The all-jobs event stream (`/v1/events`): one connection updates every row. */
const feed = { live: false, lastId: null, reload: null };

/** Apply one event to its row at once; re-read the list after state changes. */
function feedEvent(ev) {
  const tr = state.rows.get(ev.job_id);
  const type = ev.type || ev.event;
  if (tr && type === 'progress' && typeof ev.progress === 'number' && !TERMINAL.has(tr.dataset.status)) {
    const bar = tr.querySelector('[data-col="progress"] progress');
    bar.value = ev.progress;
    bar.dataset.progress = String(ev.progress);
    tr.querySelector('[data-col="progress"] .pct').textContent = pct(ev.progress);
  }
  if (type !== 'progress' && !feed.reload) {
    feed.reload = setTimeout(() => { feed.reload = null; loadJobs(); }, 150);
  }
}

async function streamFeed() {
  let resp;
  try {
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (feed.lastId) headers['Last-Event-ID'] = feed.lastId;
    resp = await fetch('/v1/events', { headers });
  } catch (_) {
    resp = null;
  }
  const ct = (resp && resp.headers.get('content-type')) || '';
  if (!resp || !resp.ok || !ct.includes('text/event-stream') || !resp.body) {
    // 401 (token), 404 (an older gateway) or down: list polling carries on; retry later.
    feed.live = false;
    document.body.dataset.feed = 'polling';
    setTimeout(streamFeed, 5000);
    return;
  }
  feed.live = true;
  document.body.dataset.feed = 'sse';
  await readSse(resp, ({ id, data }) => {
    if (id) feed.lastId = id;
    try { feedEvent(JSON.parse(data)); } catch (_) { /* not an event */ }
  });
  // Ended (gateway timeout or restart): reconnect, resuming after the last event seen.
  feed.live = false;
  setTimeout(streamFeed, 1000);
}

async function cancelJob(id) {
  try {
    const rec = await api('DELETE', `/v1/jobs/${id}`);
    $('jobs-msg').textContent = `Cancelled job ${id}.`;
    if (rec && state.rows.has(id)) updateRow(state.rows.get(id), rec);
    if (state.openId === id && rec) renderRecord(rec);
  } catch (e) {
    $('jobs-msg').textContent = `Could not cancel job ${id}: ${e.message}`;
  }
  loadJobs();
}

function initJobs() {
  $('status-filter').addEventListener('change', () => {
    state.filter = $('status-filter').value;
    state.cursor = null;
    state.cursorStack = [];
    loadJobs();
  });
  $('refresh-jobs').addEventListener('click', loadJobs);
  $('schedule-filter-clear').addEventListener('click', () => filterBySchedule(null));
  $('next-page').addEventListener('click', () => {
    if (state.cursorSupported) {
      if (!state.nextCursor) return;
      state.cursorStack.push(state.cursor);
      state.cursor = state.nextCursor;
    } else {
      state.limit = Math.min(1000, state.limit + 20);
    }
    loadJobs();
  });
  $('prev-page').addEventListener('click', () => {
    if (state.cursorSupported) {
      state.cursor = state.cursorStack.length ? state.cursorStack.pop() : null;
    } else {
      state.limit = 20;
    }
    loadJobs();
  });
}

// ---------------------------------------------------------------- job view

function renderRecord(rec) {
  state.openRecord = rec;
  $('job-id').textContent = rec.id;
  const dl = $('job-record');
  dl.replaceChildren();
  const add = (k, v, key) => {
    if (v == null || v === '') return;
    const dd = el('dd', { 'data-field': key }, String(v));
    dl.append(el('dt', {}, k), dd);
  };
  add('Status', rec.status, 'status');
  if (rec.cached) add('Cached', 'yes: the result of an identical earlier job, reused', 'cached');
  add('Kind', rec.kind, 'kind');
  add('Input', typeof rec.input === 'string' ? rec.input : JSON.stringify(rec.input), 'input');
  if (rec.params) add('Params', JSON.stringify(rec.params), 'params');
  add('Progress', pct(rec.status === 'done' ? 1 : rec.progress), 'progress');
  add('Attempts', rec.attempts, 'attempts');
  add('Worker', rec.worker, 'worker');
  add('Schedule', rec.schedule, 'schedule');
  add('Error', rec.error, 'error');
  if (rec.retries) add('Retries', rec.retries, 'retries');
  // The error trail: every failed attempt, with its worker.
  for (const f of rec.failures || []) {
    add(`Attempt ${f.attempt} failed`, `${f.at} ${f.worker || '-'}: ${f.error}`, `failure-${f.attempt}`);
  }
  add('Submitted', rec.submitted_at, 'submitted_at');
  add('Due', rec.run_at, 'run_at');
  add('Started', rec.started_at, 'started_at');
  add('Finished', rec.finished_at, 'finished_at');
  add('Duration', duration(rec), 'duration');
  $('job-cancel').hidden = TERMINAL.has(rec.status);
  $('job-retry').hidden = rec.status !== 'failed';

  const info = rec.status === 'done' ? rec.result_info : null;
  $('result-box').hidden = !info;
  if (info) {
    $('result-digits').textContent = String(info.digits);
    $('result-bytes').textContent = String(info.bytes);
    $('result-sha').textContent = info.sha256;
    $('result-head').textContent = info.head;
    $('result-tail').textContent = info.tail;
    const link = $('result-download');
    link.href = `/v1/jobs/${rec.id}/result`;
    link.setAttribute('download', `${rec.id}.txt`);
    $('copy-result').hidden = !(typeof rec.result === 'string' && info.bytes <= COPY_LIMIT);
  }
  seedTimeline(rec);
  if (state.rows.has(rec.id)) updateRow(state.rows.get(rec.id), rec);
}

/** Timeline entries keyed so an SSE event replaces the one guessed from the record. */
function timelineEntry(key, atMs, eventName, text) {
  const list = $('job-timeline');
  let li = list.querySelector(`li[data-key="${CSS.escape(key)}"]`);
  if (!li) {
    li = el('li', { 'data-key': key });
    // Keep the list in time order.
    const after = [...list.children].find((c) => Number(c.dataset.at) > atMs);
    list.insertBefore(li, after || null);
  }
  li.dataset.at = String(atMs);
  li.dataset.event = eventName;
  li.replaceChildren(el('time', { datetime: new Date(atMs).toISOString() }, fmtTime(atMs)), ` ${text}`);
}

function seedTimeline(rec) {
  const at = (s) => (s ? Date.parse(s) : null);
  if (rec.submitted_at) timelineEntry('accepted', at(rec.submitted_at), 'accepted', 'accepted');
  if (rec.run_at) timelineEntry('scheduled', at(rec.run_at), 'scheduled', `scheduled for ${rec.run_at}`);
  if (rec.started_at) {
    timelineEntry(`started-${rec.attempts}`, at(rec.started_at), 'started',
      `started attempt ${rec.attempts}${rec.worker ? ` on ${rec.worker}` : ''}`);
  }
  if (rec.status === 'running' && rec.progress > 0) {
    timelineEntry('progress', Date.now(), 'progress', `progress ${pct(rec.progress)}`);
  }
  if (TERMINAL.has(rec.status)) {
    const t = at(rec.finished_at) || Date.now();
    timelineEntry('end', t, rec.status, rec.status + (rec.error ? `: ${rec.error}` : ''));
  }
}

function applyEvent(ev) {
  const type = ev.type || ev.event;
  const atMs = ev.at_ms || Date.now();
  switch (type) {
    case 'accepted': timelineEntry('accepted', atMs, type, 'accepted'); break;
    case 'started':
      timelineEntry(`started-${ev.attempt}`, atMs, type,
        `started attempt ${ev.attempt}${ev.worker ? ` on ${ev.worker}` : ''}`);
      break;
    case 'progress':
      timelineEntry('progress', atMs, type, `progress ${pct(ev.progress)}`);
      if (state.openId && state.rows.has(state.openId) && ev.progress != null) {
        const bar = state.rows.get(state.openId).querySelector('progress');
        bar.value = ev.progress;
        bar.dataset.progress = String(ev.progress);
      }
      break;
    case 'done': case 'failed': case 'cancelled':
      timelineEntry('end', atMs, type, type + (ev.error ? `: ${ev.error}` : ''));
      break;
    default:
      timelineEntry(`${type}-${ev.attempt}-${atMs}`, atMs, type || 'event',
        `${type || 'event'}${ev.attempt ? ` (attempt ${ev.attempt})` : ''}${ev.error ? `: ${ev.error}` : ''}`);
  }
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/** Poll the record every 500 ms until it is terminal (gateways without the SSE endpoint). */
async function pollJob(id, ctrl) {
  $('live-mode').textContent = 'live: polling every 0.5 s';
  $('job-view').dataset.live = 'poll';
  while (!ctrl.signal.aborted) {
    try {
      const rec = await api('GET', `/v1/jobs/${id}`);
      if (ctrl.signal.aborted) return;
      renderRecord(rec);
      if (TERMINAL.has(rec.status)) {
        $('live-mode').textContent = '';
        return;
      }
    } catch (_) { /* shown by api(); keep trying */ }
    await sleep(POLL_JOB_EVERY_MS, ctrl.signal);
  }
}

/**
 * Read a Server-Sent Events body until it ends or drops, calling `onEvent({ id, name, data })`
 * per event (fetch, not EventSource, so the bearer token can be sent).
 */
async function readSse(resp, onEvent) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let id = null;
        let name = '';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('id:')) id = line.slice(3).trim();
        }
        if (data.length) onEvent({ id, name, data: data.join('\n') });
      }
    }
  } catch (_) { /* aborted or the connection dropped */ }
}

/** Follow `/v1/jobs/{id}/events` (Server-Sent Events, read with fetch so the token can be sent). */
async function streamJob(id, ctrl) {
  let resp;
  try {
    resp = await fetch(`/v1/jobs/${id}/events`, {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      signal: ctrl.signal,
    });
  } catch (_) {
    if (!ctrl.signal.aborted) pollJob(id, ctrl);
    return;
  }
  const ct = resp.headers.get('content-type') || '';
  if (resp.status === 401 || resp.status === 403) {
    noteAuth(resp.status, ct.includes('json') ? await resp.json().catch(() => null) : null);
  }
  if (!resp.ok || !ct.includes('text/event-stream') || !resp.body) {
    pollJob(id, ctrl); // 404: this gateway has no event stream yet
    return;
  }
  $('live-mode').textContent = 'live: event stream';
  $('job-view').dataset.live = 'sse';
  let refresh = null;
  await readSse(resp, ({ name, data }) => {
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    if (!ev.type && !ev.event && name) ev.type = name;
    applyEvent(ev);
    if ((ev.type || ev.event) !== 'progress' && !refresh) {
      // A state change: re-read the record (attempts, worker, result) once it settles.
      refresh = setTimeout(async () => {
        refresh = null;
        try { if (state.openId === id) renderRecord(await api('GET', `/v1/jobs/${id}`)); } catch (_) { /* shown */ }
      }, 100);
    }
  });
  if (ctrl.signal.aborted) return;
  // The stream ended: make sure the record shows the final state.
  const rec = await api('GET', `/v1/jobs/${id}`).catch(() => null);
  if (rec) renderRecord(rec);
  if (rec && !TERMINAL.has(rec.status)) pollJob(id, ctrl);
  else $('live-mode').textContent = '';
}

async function openJob(id) {
  stopLive();
  state.openId = id;
  $('job-timeline').replaceChildren();
  delete $('job-view').dataset.live;
  $('copy-msg').textContent = '';
  $('result-box').hidden = true;
  $('job-view').hidden = false;
  $('job-id').textContent = id;
  if (location.hash !== `#job=${id}`) history.replaceState(null, '', `#job=${id}`);
  try {
    const rec = await api('GET', `/v1/jobs/${id}`);
    if (state.openId !== id) return;
    renderRecord(rec);
  } catch (e) {
    $('job-record').replaceChildren(el('dd', {}, `Could not load the job: ${e.message}`));
    return;
  }
  $('job-view').scrollIntoView({ block: 'start' });
  const ctrl = new AbortController();
  state.live = ctrl;
  streamJob(id, ctrl);
}

function closeJob() {
  stopLive();
  state.openId = null;
  state.openRecord = null;
  $('job-view').hidden = true;
  history.replaceState(null, '', location.pathname);
}

async function copyResult() {
  const rec = state.openRecord;
  if (!rec || typeof rec.result !== 'string') return;
  try {
    await navigator.clipboard.writeText(rec.result);
  } catch (_) {
    // Not a secure context (plain HTTP on another host): the old way.
    const ta = el('textarea', { 'aria-hidden': 'true', class: 'offscreen' });
    ta.value = rec.result;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    if (!ok) {
      $('copy-msg').textContent = 'Copying is not allowed here; use the download link.';
      return;
    }
  }
  $('copy-msg').textContent = `Copied ${rec.result.length} characters.`;
}

/** With a token the plain link cannot authenticate, so fetch the file and save it. */
async function downloadWithToken(ev) {
  if (!token() || !state.openRecord) return;
  ev.preventDefault();
  const id = state.openRecord.id;
  const resp = await fetch(`/v1/jobs/${id}/result`, { headers: authHeaders() }).catch(() => null);
  if (!resp || !resp.ok) {
    if (resp) noteAuth(resp.status, null);
    $('copy-msg').textContent = `Download failed${resp ? ` (HTTP ${resp.status})` : ''}.`;
    return;
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = el('a', { href: url, download: `${id}.txt` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function initJobView() {
  $('job-close').addEventListener('click', closeJob);
  $('job-cancel').addEventListener('click', () => state.openId && cancelJob(state.openId));
  $('job-retry').addEventListener('click', () => state.openId && retryJob(state.openId));
  $('copy-result').addEventListener('click', copyResult);
  $('result-download').addEventListener('click', downloadWithToken);
  const m = /^#job=([0-9a-f-]{36})$/.exec(location.hash);
  if (m) openJob(m[1]);
}

// ---------------------------------------------------------------- workflows

// id: the workflow shown; live: AbortController of its stream or poll loop;
// rows: step name -> <tr>.
const wf = { id: null, live: null, rows: new Map() };
const WF_POLL_EVERY_MS = 1000;

function clearWorkflowError() {
  const err = $('err-w-spec');
  err.replaceChildren();
  delete err.dataset.field;
  $('w-spec').removeAttribute('aria-invalid');
}

/** A refused workflow: the API's detail, and the field it names (e.g. `steps[1].depends_on`). */
function showWorkflowProblem(problem, status) {
  const err = $('err-w-spec');
  const detail = problem.detail || problem.title || `HTTP ${status}`;
  const label = typeof status === 'number' ? `Refused (${status}):` : 'Not sent:';
  const parts = [el('strong', {}, label), ' ', el('span', { 'data-part': 'detail' }, detail)];
  if (problem.field) {
    parts.push(' — field: ', el('code', { 'data-part': 'field' }, problem.field));
    err.dataset.field = problem.field;
  }
  err.replaceChildren(...parts);
  $('w-spec').setAttribute('aria-invalid', 'true');
  $('w-spec').focus();
}

function newStepRow(name) {
  const tr = el('tr', { 'data-step': name });
  const cells = ['name', 'kind', 'status', 'progress', 'depends_on', 'job'].map((c) => el('td', { 'data-col': c }));
  cells[0].textContent = name;
  cells[2].append(el('span', { class: 'status' }));
  cells[3].append(el('progress', { max: '1', value: '0', 'aria-label': `Progress of step ${name}` }), el('span', { class: 'pct' }));
  tr.append(...cells);
  return tr;
}

function updateStepRow(tr, step) {
  const cell = (c) => tr.querySelector(`[data-col="${c}"]`);
  tr.dataset.status = step.status;
  cell('kind').textContent = step.kind;
  const status = cell('status').firstChild;
  status.textContent = step.status;
  status.className = `status status-${step.status}`;
  const p = step.status === 'done' ? 1 : (step.progress || 0);
  const bar = cell('progress').querySelector('progress');
  bar.value = p;
  bar.dataset.progress = String(p);
  cell('progress').querySelector('.pct').textContent = pct(p);
  cell('depends_on').textContent = (step.depends_on || []).join(', ');
  // The job: a link to the job view once it exists (a waiting or skipped step has none yet).
  const job = cell('job');
  if (job.dataset.jobId !== step.job_id) {
    const open = el('button', { type: 'button', class: 'link', 'data-action': 'open', 'aria-label': `Open job ${step.job_id} of step ${step.name}`, title: step.job_id }, shortId(step.job_id));
    open.addEventListener('click', () => openJob(step.job_id));
    job.replaceChildren(open);
    job.dataset.jobId = step.job_id;
  }
  job.firstChild.disabled = step.status === 'waiting' || step.status === 'skipped';
}

function fmtCounts(counts) {
  return Object.entries(counts || {})
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
}

/** Show one `GET /v1/workflows/{id}` view (also each SSE `workflow` event). */
function renderWorkflow(view) {
  if (!view || view.id !== wf.id) return;
  const box = $('workflow-view');
  box.dataset.status = view.status;
  $('wf-id').textContent = view.id;
  const status = $('wf-status');
  status.textContent = view.status;
  status.className = `status status-${view.status}`;
  const p = view.status === 'done' ? 1 : (view.progress || 0);
  $('wf-progress').value = p;
  $('wf-progress').dataset.progress = String(p);
  $('wf-pct').textContent = pct(p);
  $('wf-counts').textContent = fmtCounts(view.counts);
  const h = view.halted;
  $('wf-halted').textContent = !h ? ''
    : h.step ? `Stopped: step “${h.step}” ${h.status === 'failed' ? 'failed' : 'was cancelled'} at ${h.at}; steps after it were skipped.`
      : `Stopped: ${h.status} at ${h.at}.`;
  $('wf-cancel').hidden = TERMINAL.has(view.status);
  const body = $('wf-steps');
  const seen = new Set();
  (view.steps || []).forEach((step, i) => {
    seen.add(step.name);
    let tr = wf.rows.get(step.name);
    if (!tr) {
      tr = newStepRow(step.name);
      wf.rows.set(step.name, tr);
    }
    updateStepRow(tr, step);
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [name, tr] of wf.rows) {
    if (!seen.has(name)) {
      tr.remove();
      wf.rows.delete(name);
    }
  }
}

function stopWorkflowLive() {
  if (wf.live) wf.live.abort();
  wf.live = null;
}

/** Re-read the workflow every second until it ended (gateways without the event stream). */
async function pollWorkflow(id, ctrl) {
  $('wf-live').textContent = 'live: polling every 1 s';
  $('workflow-view').dataset.live = 'poll';
  while (!ctrl.signal.aborted) {
    try {
      const view = await api('GET', `/v1/workflows/${id}`);
      if (ctrl.signal.aborted) return;
      renderWorkflow(view);
      if (TERMINAL.has(view.status)) {
        $('wf-live').textContent = '';
        return;
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        $('wf-msg').textContent = `Workflow ${id} is gone.`;
        return;
      }
    }
    await sleep(WF_POLL_EVERY_MS, ctrl.signal);
  }
}

/** Follow `/v1/workflows/{id}/events`: a `workflow` event with the whole view on every change. */
async function streamWorkflow(id, ctrl) {
  let resp;
  try {
    resp = await fetch(`/v1/workflows/${id}/events`, {
      headers: authHeaders({ Accept: 'text/event-stream' }),
      signal: ctrl.signal,
    });
  } catch (_) {
    if (!ctrl.signal.aborted) pollWorkflow(id, ctrl);
    return;
  }
  const ct = resp.headers.get('content-type') || '';
  if (resp.status === 401 || resp.status === 403) {
    noteAuth(resp.status, ct.includes('json') ? await resp.json().catch(() => null) : null);
  }
  if (!resp.ok || !ct.includes('text/event-stream') || !resp.body) {
    pollWorkflow(id, ctrl);
    return;
  }
  $('wf-live').textContent = 'live: event stream';
  $('workflow-view').dataset.live = 'sse';
  let last = null;
  await readSse(resp, ({ name, data }) => {
    if (name && name !== 'workflow') return;
    try { last = JSON.parse(data); } catch (_) { return; }
    if (!ctrl.signal.aborted) renderWorkflow(last);
  });
  if (ctrl.signal.aborted) return;
  // The stream ends when the workflow ended, or on a gateway timeout: check which.
  if (last && TERMINAL.has(last.status)) {
    $('wf-live').textContent = '';
    return;
  }
  pollWorkflow(id, ctrl);
}

function showWorkflow(id) {
  stopWorkflowLive();
  wf.id = id;
  wf.rows.clear();
  $('wf-steps').replaceChildren();
  $('wf-msg').textContent = '';
  $('wf-halted').textContent = '';
  $('wf-counts').textContent = '';
  $('wf-id').textContent = id;
  const status = $('wf-status');
  status.textContent = '';
  status.className = 'status';
  const box = $('workflow-view');
  delete box.dataset.status;
  delete box.dataset.live;
  box.dataset.id = id;
  box.hidden = false;
  const ctrl = new AbortController();
  wf.live = ctrl;
  streamWorkflow(id, ctrl);
}

async function cancelWorkflow() {
  const id = wf.id;
  if (!id) return;
  $('wf-cancel').disabled = true;
  try {
    const view = await api('DELETE', `/v1/workflows/${id}`);
    renderWorkflow(view);
    $('wf-msg').textContent = `Cancelled workflow ${id}` +
      (view && view.cancelled_now != null ? ` (${view.cancelled_now} running or queued steps stopped).` : '.');
  } catch (e) {
    $('wf-msg').textContent = `Could not cancel workflow ${id}: ${e.message}`;
  } finally {
    $('wf-cancel').disabled = false;
  }
  loadJobs();
}

function initWorkflow() {
  $('wf-cancel').addEventListener('click', cancelWorkflow);
  $('w-spec').addEventListener('input', clearWorkflowError);
  $('workflow-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearWorkflowError();
    const msg = $('workflow-msg');
    delete msg.dataset.workflowId;
    let body;
    try {
      body = JSON.parse($('w-spec').value);
    } catch (e) {
      msg.textContent = '';
      showWorkflowProblem({ detail: `this is not valid JSON: ${e.message}` }, 'not sent');
      return;
    }
    msg.textContent = 'Submitting…';
    const btn = $('workflow-submit');
    btn.disabled = true;
    try {
      const res = await api('POST', '/v1/workflows', body);
      msg.textContent = `Submitted workflow ${res.id}: ${res.steps.length} step${res.steps.length === 1 ? '' : 's'}.`;
      msg.dataset.workflowId = res.id;
      showWorkflow(res.id);
      loadJobs();
    } catch (e) {
      msg.textContent = '';
      if (e instanceof ApiError) showWorkflowProblem(e.problem, e.status);
      else showWorkflowProblem({ detail: `could not reach the gateway: ${e.message}` }, 'not sent');
    } finally {
      btn.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- schedules

/** The API fields of `POST /v1/schedules` shown under the schedule form's own controls. */
const SCHEDULE_ERRORS = { cron: 's-cron', time_zone: 's-tz', paused: 's-paused' };

// rows: schedule id -> <tr>; gen: bumped by every list read and action, so an answer to
// a read that started before a later one (or before a pause, resume or delete) is dropped.
const schedules = { rows: new Map(), gen: 0 };

function clearScheduleErrors() {
  for (const controlId of Object.values(SCHEDULE_ERRORS)) {
    $(`err-${controlId}`).textContent = '';
    $(controlId).removeAttribute('aria-invalid');
  }
  $('err-schedule-form').textContent = '';
  clearFieldErrors();
}

/** Put a `POST /v1/schedules` problem next to its control: ours, or the job's in the submit form. */
function showScheduleProblem(problem, status) {
  const field = problem.field || '';
  const detail = problem.detail || problem.title || `HTTP ${status}`;
  const own = SCHEDULE_ERRORS[field];
  if (own) {
    $(`err-${own}`).textContent = detail;
    $(own).setAttribute('aria-invalid', 'true');
    $(own).focus();
    return;
  }
  if (field.startsWith('job.')) {
    const jobField = field.slice(4);
    if (FIELD_ERRORS[jobField.split(/[.[]/)[0]]) {
      showProblem({ ...problem, field: jobField }, status);
      $('err-schedule-form').textContent = `The job (from “Submit a job”): ${detail}`;
      return;
    }
  }
  $('err-schedule-form').textContent = field ? `${field}: ${detail}` : `${status}: ${detail}`;
}

/** The schedule's job: the submit form's, without the one-off timing (`delay`, `run_at`). */
function scheduleJob() {
  const { delay: _delay, run_at: _runAt, ...job } = buildRequest();
  return job;
}

function fmtScheduleJob(job) {
  if (!job || typeof job !== 'object') return '';
  return `${job.kind || '?'} ${job.input === undefined ? '' : fmtInput(job)}`.trim();
}

function newScheduleRow(id) {
  const tr = el('tr', { 'data-schedule-id': id });
  const button = (action, label, text, cls) => {
    const b = el('button', { type: 'button', 'data-action': action, 'aria-label': `${label} schedule ${id}` }, text);
    if (cls) b.className = cls;
    b.addEventListener('click', () => scheduleAction(id, action));
    return b;
  };
  const cells = ['id', 'cron', 'time_zone', 'job', 'state', 'actions'].map((c) => el('td', { 'data-col': c }));
  cells[0].append(el('code', { title: id }, shortId(id)));
  cells[5].append(
    button('pause', 'Pause', 'Pause'),
    button('resume', 'Resume', 'Resume'),
    el('button', { type: 'button', 'data-action': 'jobs', 'aria-label': `Show the jobs of schedule ${id}` }, 'Jobs'),
    button('delete', 'Delete', 'Delete', 'danger'),
  );
  cells[5].querySelector('[data-action="jobs"]').addEventListener('click', () => filterBySchedule(id));
  tr.append(...cells);
  return tr;
}

function updateScheduleRow(tr, rec) {
  const cell = (c) => tr.querySelector(`[data-col="${c}"]`);
  const st = rec.paused ? 'paused' : 'running';
  tr.dataset.state = st;
  cell('cron').textContent = rec.cron;
  cell('time_zone').textContent = rec.time_zone || 'UTC';
  cell('job').textContent = fmtScheduleJob(rec.job);
  cell('job').title = JSON.stringify(rec.job);
  cell('state').textContent = st;
  cell('state').className = `status status-${st}`;
  cell('actions').querySelector('[data-action="pause"]').hidden = rec.paused;
  cell('actions').querySelector('[data-action="resume"]').hidden = !rec.paused;
}

function renderSchedules(list) {
  const body = $('schedules-body');
  const seen = new Set();
  list.forEach((rec, i) => {
    seen.add(rec.id);
    let tr = schedules.rows.get(rec.id);
    if (!tr) {
      tr = newScheduleRow(rec.id);
      schedules.rows.set(rec.id, tr);
    }
    updateScheduleRow(tr, rec);
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [id, tr] of schedules.rows) {
    if (!seen.has(id)) {
      tr.remove();
      schedules.rows.delete(id);
    }
  }
  $('schedules-empty').hidden = list.length > 0;
}

let schedulesTimer = null;

function scheduleMsg(text, isError) {
  const msg = $('schedules-msg');
  msg.textContent = text;
  if (isError) msg.dataset.error = 'true';
  else delete msg.dataset.error;
}

async function loadSchedules() {
  clearTimeout(schedulesTimer);
  const gen = ++schedules.gen;
  try {
    const data = await api('GET', '/v1/schedules');
    if (gen !== schedules.gen) return;
    renderSchedules((data && data.schedules) || []);
    // A read error goes once the list reads again; an action's message stays.
    if ($('schedules-msg').dataset.error) scheduleMsg('');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) scheduleMsg('This gateway has no /v1/schedules endpoint.', true);
    else if (!(e instanceof ApiError && e.status === 401)) scheduleMsg(`Could not list schedules: ${e.message}`, true);
  } finally {
    clearTimeout(schedulesTimer);
    schedulesTimer = setTimeout(loadSchedules, SCHEDULES_EVERY_MS);
  }
}

/** Pause, resume or delete one schedule; the row shows the answer at once. */
async function scheduleAction(id, action) {
  const tr = schedules.rows.get(id);
  const buttons = tr ? [...tr.querySelectorAll('button')] : [];
  buttons.forEach((b) => { b.disabled = true; });
  schedules.gen++;
  try {
    if (action === 'delete') {
      await api('DELETE', `/v1/schedules/${id}`);
      if (tr) tr.remove();
      schedules.rows.delete(id);
      $('schedules-empty').hidden = schedules.rows.size > 0;
      scheduleMsg(`Deleted schedule ${id}.`);
    } else {
      const rec = await api('POST', `/v1/schedules/${id}/${action}`);
      if (rec && schedules.rows.has(id)) updateScheduleRow(schedules.rows.get(id), rec);
      scheduleMsg(`${action === 'pause' ? 'Paused' : 'Resumed'} schedule ${id}.`);
    }
  } catch (e) {
    scheduleMsg(`Could not ${action} schedule ${id}: ${e.message}`);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
  loadSchedules();
}

/** Show only the jobs of schedule `id` in the jobs table (null: all jobs again). */
function filterBySchedule(id) {
  state.schedule = id;
  state.cursor = null;
  state.cursorStack = [];
  $('schedule-filter').hidden = !id;
  $('schedule-filter-id').textContent = id ? shortId(id) : '';
  $('schedule-filter-id').title = id || '';
  $('jobs').dataset.schedule = id || '';
  loadJobs();
  if (id) $('jobs').scrollIntoView({ block: 'start' });
}

function initSchedules() {
  $('refresh-schedules').addEventListener('click', loadSchedules);
  $('schedule-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearScheduleErrors();
    const msg = $('schedule-msg');
    msg.textContent = 'Creating…';
    delete msg.dataset.scheduleId;
    const btn = $('schedule-create');
    btn.disabled = true;
    try {
      const body = { cron: $('s-cron').value.trim(), job: scheduleJob() };
      const tz = $('s-tz').value.trim();
      if (tz !== '') body.time_zone = tz;
      if ($('s-paused').checked) body.paused = true;
      const rec = await api('POST', '/v1/schedules', body);
      msg.textContent = `Created schedule ${rec.id}${rec.paused ? ' (paused)' : ''}.`;
      msg.dataset.scheduleId = rec.id;
      await loadSchedules();
    } catch (e) {
      msg.textContent = '';
      if (e instanceof ApiError) showScheduleProblem(e.problem, e.status);
      else $('err-schedule-form').textContent = `Could not create the schedule: ${e.message}`;
    } finally {
      btn.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- workers

let workersTimer = null;

async function loadWorkers() {
  clearTimeout(workersTimer);
  loadLimits();
  try {
    const data = await api('GET', '/v1/workers');
    $('queue-depth').textContent = String(data.queue_depth);
    loadActivity();
    const body = $('workers-body');
    body.replaceChildren(...data.workers.map((w) => {
      const tr = el('tr', { 'data-worker': w.id });
      const age = Date.now() - w.reported_at_ms;
      for (const [col, v] of [
        ['id', w.id], ['host', w.host], ['concurrency', w.concurrency], ['running', w.running],
        ['frozen', w.frozen ? 'frozen' : 'no'], ['config_revision', w.config_revision],
        ['done', `${w.done} / ${w.failed}`], ['age', `${fmtDuration(Math.max(0, age))} ago`],
      ]) tr.append(el('td', { 'data-col': col }, String(v)));
      return tr;
    }));
    $('workers-msg').textContent = data.workers.length ? '' : 'No live workers: jobs wait in the queue.';
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) $('workers-msg').textContent = 'This gateway has no /v1/workers endpoint.';
    else if (!(e instanceof ApiError && e.status === 401)) $('workers-msg').textContent = `Could not read workers: ${e.message}`;
  } finally {
    workersTimer = setTimeout(loadWorkers, WORKERS_EVERY_MS);
  }
}

// ---------------------------------------------------------------- limits

/** A limit's rate as operators write it: `5/s`, `30/m`, `100/h`, `2/10s`, `1/500ms`. */
function fmtRate(rate) {
  if (!rate) return '';
  const unit = { 1000: 's', 60000: 'm', 3600000: 'h' }[rate.per_ms]
    || (rate.per_ms % 1000 === 0 ? `${rate.per_ms / 1000}s` : `${rate.per_ms}ms`);
  return `${rate.starts}/${unit}`;
}

/** When the next start under a rate is allowed (`next_start_ms` is sent only when in the future). */
function fmtNextStart(limit, usage) {
  if (!limit.rate) return '';
  const wait = usage.next_start_ms == null ? 0 : usage.next_start_ms - Date.now();
  return wait > 0 ? `in ${fmtDuration(wait)}` : 'now';
}

/** One row per scope a limit counts (a `tenant: "*"` limit counts each tenant on its own). */
function limitRows(view) {
  const limit = view.limit;
  const usage = view.usage.length ? view.usage : [{ running: 0 }];
  return usage.map((u) => {
    const tr = el('tr', { 'data-scope': view.scope });
    if (u.tenant) tr.dataset.tenant = u.tenant;
    for (const [col, v] of [
      ['scope', view.scope], ['max_running', limit.max_running == null ? '' : limit.max_running],
      ['rate', fmtRate(limit.rate)], ['tenant', u.tenant || ''],
      // A rate alone holds no places, so it has no running count to show.
      ['running', limit.max_running == null ? '' : `${u.running} / ${limit.max_running}`],
      ['next_start', fmtNextStart(limit, u)],
    ]) tr.append(el('td', { 'data-col': col }, String(v)));
    return tr;
  });
}

async function loadLimits() {
  try {
    const data = await api('GET', '/v1/limits');
    const limits = (data && data.limits) || [];
    $('limits-body').replaceChildren(...limits.flatMap(limitRows));
    $('limits-empty').hidden = limits.length > 0;
    $('limits-msg').textContent = '';
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) $('limits-msg').textContent = 'This gateway has no /v1/limits endpoint.';
    else if (!(e instanceof ApiError && e.status === 401)) $('limits-msg').textContent = `Could not read limits: ${e.message}`;
  }
}

// ---------------------------------------------------------------- activity charts

/** Draw one series of `/v1/activity` into its figure: a line scaled to its own peak. */
function drawChart(fig, samples) {
  const key = fig.dataset.series;
  const pts = samples.filter((s) => s[key] !== null && s[key] !== undefined);
  const line = fig.querySelector('polyline');
  fig.dataset.points = String(pts.length);
  if (!pts.length) {
    line.setAttribute('points', '');
    return;
  }
  const t0 = samples[0].at_ms;
  const span = Math.max(1, samples[samples.length - 1].at_ms - t0);
  const peak = Math.max(...pts.map((s) => s[key]));
  const fmt = (v) => (key === 'finished_per_sec' ? (v >= 10 ? v.toFixed(0) : v.toFixed(1)) : String(v));
  line.setAttribute('points', pts.map((s) => {
    const x = ((s.at_ms - t0) / span) * 300;
    const y = 58 - (peak > 0 ? (s[key] / peak) * 56 : 0);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(' '));
  const now = pts[pts.length - 1][key];
  fig.querySelector('.now').textContent = fmt(now);
  fig.dataset.now = String(now);
  fig.dataset.peak = String(peak);
  fig.querySelector('.peak').textContent = `peak ${fmt(peak)}`;
}

async function loadActivity() {
  try {
    const data = await api('GET', '/v1/activity');
    for (const fig of document.querySelectorAll('#activity .chart')) drawChart(fig, data.samples);
    const n = data.samples.length;
    $('activity-span').textContent = n > 1
      ? `last ${fmtDuration(data.samples[n - 1].at_ms - data.samples[0].at_ms)}, a sample every ${fmtDuration(data.interval_ms)}`
      : 'collecting samples…';
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) $('activity').hidden = true;
  }
}

// ---------------------------------------------------------------- start

function refreshAll() {
  loadJobs();
  loadSchedules();
  loadWorkers();
  if (state.openId) openJob(state.openId);
  if (wf.id) showWorkflow(wf.id);
}

document.addEventListener('DOMContentLoaded', () => {
  initToken();
  initSubmit();
  initJobs();
  initJobView();
  initSchedules();
  initWorkflow();
  loadJobs();
  loadSchedules();
  loadWorkers();
  streamFeed();
  document.body.dataset.ready = 'true';
});
