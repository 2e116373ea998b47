// The demo app: plain JavaScript on the relay's own browser client.
import { createClient, describeReport } from '/client.js';

const $ = (id) => document.getElementById(id);
const CHATBOT = 'demo';

// Tests (and curious users) may tune the client before the page loads: window.demoClientOptions.
const client = createClient({ baseUrl: '', ...(window.demoClientOptions ?? {}) });

// What the page saw, for anyone inspecting it (the end-to-end tests read it).
const seen = { statuses: [], chatStatuses: [], progress: {}, ended: [], resyncs: [], errors: [] };
window.demo = seen;

let logged = 0;

function log(text) {
  const item = document.createElement('li');
  // Numbered in order of arrival, newest on top: a number stays with its line as older ones drop off.
  item.value = ++logged;
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  $('log').prepend(item);
  while ($('log').children.length > 60) $('log').lastChild.remove();
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// ---- login ---------------------------------------------------------------

async function loggedIn(user) {
  $('whoami').textContent = user ? `signed in as ${user}` : 'not signed in';
  if (user) $('user').value = user;
  for (const id of ['start-downloads', 'start-upload', 'send', 'older', 'check-quick', 'check-full']) $(id).disabled = !user;
  if (user) await loadHistory(true);
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const response = await fetch('/dev/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: $('user').value.trim() || undefined }),
  });
  const answer = await response.json();
  if (!response.ok) return log(`login failed: ${answer.error?.message}`);
  log(`logged in as ${answer.user} (HttpOnly cookie until ${answer.expiresAt})`);
  await loggedIn(answer.user);
});

// ---- downloads over one multiplexed stream ------------------------------------

/**
 * The connection badge: the multiplexed stream's state, or, while a chat answer is being resumed,
 * the answer's. `suffix` says which connection it is.
 */
function showStatus(status, info, suffix = '') {
  // Closed with no HTTP status is the client with nothing to watch (before the first download, after
  // the last): idle, not a failure. Closed by a refusal says so.
  const idle = status === 'closed' && !info.httpStatus;
  const shown = idle ? 'idle' : status === 'closed' ? `closed: HTTP ${info.httpStatus}` : status;
  $('status').textContent = idle ? shown : shown + (info.delayMs ? ` (next try in ${(info.delayMs / 1000).toFixed(1)} s)` : '') + suffix;
  $('status').dataset.state = idle ? 'idle' : status;
}

// The multiplexed stream's last state, shown again once a resumed chat answer is done.
let streamState = { status: 'closed', info: {}, suffix: '' };

const rows = new Map();
const subscription = client.subscribe([], {
  onStatus(status, info) {
    seen.statuses.push({ status, at: performance.now(), ...info });
    const tab = info.tab === 'holder' ? ' · this tab holds it' : info.tab === 'follower' ? ' · shared by another tab' : '';
    streamState = { status, info, suffix: tab };
    showStatus(status, info, tab);
    log(`stream ${status}${info.reason ? `: ${info.reason}` : ''}${info.httpStatus ? ` [HTTP ${info.httpStatus}]` : ''}`);
  },
  onEvent({ topic, event, data }) {
    const row = rows.get(topic);
    if (!row) return;
    let state;
    try {
      state = JSON.parse(data);
    } catch {
      return;
    }
    (seen.progress[topic] ??= []).push({ via: event === 'status' ? 'poll' : 'stream', status: state.status, progress: state.progress });
    renderDownload(row, state);
  },
  onResync(topic) {
    seen.resyncs.push(topic);
    log(`${topic}: history lost, refetching its state`);
    client.fetch(statusPathOf(topic)).then((r) => r.json()).then((state) => rows.get(topic) && renderDownload(rows.get(topic), state));
  },
  onEnd(topic) {
    seen.ended.push(topic);
    log(`${topic} finished`);
  },
  onError(error) {
    seen.errors.push(error.message);
    log(`client: ${error.message}`);
  },
});

function statusPathOf(topic) {
  return `/api/downloads/${topic.slice('download:'.length)}/status`;
}

function renderDownload(row, state) {
  if (typeof state.progress === 'number') row.bar.value = state.progress;
  if (state.status === 'COMPLETED') {
    row.bar.value = 100;
    row.state.replaceChildren(el('a', { href: `/api/downloads/${row.code}/file`, className: 'done', textContent: 'done: file' }));
  } else if (state.status === 'FAILED') {
    row.state.replaceChildren(el('span', { className: 'failed', textContent: 'failed' }));
  } else {
    row.state.textContent = `${state.progress ?? 0} %`;
  }
}

$('start-downloads').addEventListener('click', async () => {
  const count = Math.min(20, Math.max(1, Number($('download-count').value) || 1));
  const codes = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const response = await client.fetch('/api/downloads', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: `export-${rows.size + i + 1}` }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error?.message ?? `HTTP ${response.status}`);
      return answer.code;
    }),
  ).catch((err) => (log(`could not start: ${err.message}`), []));
  for (const code of codes) {
    const topic = `download:${code}`;
    const bar = el('progress', { max: 100, value: 0 });
    const state = el('span', { textContent: 'waiting' });
    const item = el('li', {}, el('div', { className: 'line' }, el('span', { className: 'name', textContent: code }), state), bar);
    item.dataset.topic = topic;
    $('download-list').append(item);
    rows.set(topic, { code, bar, state });
  }
  subscription.add(codes.map((code) => `download:${code}`));
  log(`started ${codes.length} download(s) on the same stream`);
});

// ---- uploads ------------------------------------------------------------------

const STAGES = [
  ['ocr', 'OCR'],
  ['llm_metadata', 'LLM'],
  ['embedding', 'Embedding'],
];
let currentUpload;

// What a file's line says for the backend's last event; `data-stage` keeps the event's own name.
const STAGE_LABELS = {
  queued: 'queued',
  sending: 'uploading',
  start: 'uploading',
  file_saving: 'uploading',
  file_saved: 'uploaded',
  processing_start: 'chunking',
  total_chunks: 'chunking',
  ocr_start: 'OCR',
  ocr_chunk_processed: 'OCR',
  ocr_complete: 'OCR done',
  llm_metadata_start: 'LLM',
  llm_chunk_processed: 'LLM',
  llm_metadata_complete: 'LLM done',
  embedding_start: 'Embedding',
  embedding_chunk_processed: 'Embedding',
  embedding_complete: 'Embedding done',
};
const OUTCOME_LABELS = { complete: 'done', cancelled: 'cancelled', error: 'failed' };

function stageLabel(progress) {
  if (progress.done) return (OUTCOME_LABELS[progress.outcome] ?? progress.outcome) + (progress.error ? `: ${progress.error}` : '');
  // An event this page does not know yet still reads as words.
  return STAGE_LABELS[progress.stage] ?? progress.stage.replaceAll('_', ' ');
}

$('start-upload').addEventListener('click', () => {
  const files = [...$('files').files];
  if (files.length === 0) return log('choose one or more files first');
  const items = new Map();
  currentUpload = client.upload(files, { collection_name: 'demo', chunk_size: 200, chunk_overlap: 20 }, {
    onProgress(file) {
      renderUpload(items.get(file.index), file.progress);
    },
    onError(error, file) {
      log(`upload ${file.progress.name}: ${error.message}`);
    },
  });
  for (const file of currentUpload.files) {
    const stage = el('span', { textContent: 'queued' });
    const cancel = el('button', { textContent: 'Cancel', onclick: () => file.cancel() });
    const grid = el('div', { className: 'stages' });
    const bars = {};
    for (const [key, label] of STAGES) {
      bars[key] = { bar: el('progress', { max: 1, value: 0 }), count: el('span', { textContent: '0 / ?' }) };
      grid.append(el('span', { textContent: label }), bars[key].bar, bars[key].count);
    }
    const item = el('li', {}, el('div', { className: 'line' }, el('span', { className: 'name', textContent: file.progress.name }), stage, cancel), grid);
    item.dataset.file = file.progress.name;
    items.set(file.index, { item, stage, cancel, bars });
    $('upload-list').append(item);
  }
  $('cancel-all').disabled = false;
  currentUpload.done.then((results) => {
    $('cancel-all').disabled = true;
    log(`upload finished: ${results.map((r) => `${r.name} ${r.outcome}`).join(', ')}`);
  });
});

$('cancel-all').addEventListener('click', () => currentUpload?.cancel());

function renderUpload(view, progress) {
  view.item.dataset.stage = progress.stage;
  view.item.dataset.outcome = progress.outcome ?? '';
  if (progress.sessionId) view.item.dataset.session = progress.sessionId;
  view.stage.textContent = stageLabel(progress);
  view.stage.className = progress.outcome === 'complete' ? 'done' : progress.outcome === 'error' ? 'failed' : progress.outcome ?? '';
  view.cancel.disabled = progress.done;
  for (const [key] of STAGES) {
    const total = progress.totalChunks ?? 0;
    view.bars[key].bar.max = total || 1;
    view.bars[key].bar.value = progress.processed[key];
    view.bars[key].count.textContent = `${progress.processed[key]} / ${total || '?'}`;
  }
}

// ---- chat -------------------------------------------------------------------------

let pager;
let reply;

function message(role, text) {
  return el('li', { className: role, textContent: text });
}

async function loadHistory(fresh) {
  if (fresh) {
    pager = client.history(CHATBOT);
    $('messages').replaceChildren();
  }
  const page = await pager.next();
  $('messages').prepend(...page.messages.map((m) => message(m.role, m.text)));
  $('older').disabled = !pager.hasMore;
  if (fresh) $('messages').scrollTop = $('messages').scrollHeight;
}

$('older').addEventListener('click', () => loadHistory(false));

$('ask').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('question').value.trim();
  if (!text || reply) return;
  $('question').value = '';
  $('messages').append(message('user', text));
  const answer = message('assistant', '');
  $('messages').append(answer);
  $('stop').disabled = false;
  let resumed = false;
  reply = client.chat({ chatbotId: CHATBOT, message: text }, {
    onToken(_token, sofar) {
      answer.textContent = sofar;
      $('messages').scrollTop = $('messages').scrollHeight;
    },
    // The answer's connection dropped: the client resumes it where it broke, and the badge shows it.
    onStatus(status, info) {
      resumed = true;
      seen.chatStatuses.push({ status, at: performance.now(), ...info });
      showStatus(status, info, ' · chat answer');
      log(`chat answer ${status === 'open' ? 'resumed' : status}${info.reason ? `: ${info.reason}` : ''}`);
    },
  });
  try {
    await reply.done;
    answer.dataset.done = 'true';
  } catch (err) {
    answer.dataset.done = 'error';
    log(`chat: ${err.message}`);
  } finally {
    reply = undefined;
    $('stop').disabled = true;
    if (resumed) showStatus(streamState.status, streamState.info, streamState.suffix);
  }
});

$('stop').addEventListener('click', () => reply?.abort());

// ---- path check -------------------------------------------------------------------

// The relay's diagnostic ticks, read and judged by the client exactly as `npm run check-path` does.
async function runPathCheck(quiet) {
  const buttons = [$('check-quick'), $('check-full')];
  for (const button of buttons) button.disabled = true;
  $('path-report').dataset.state = 'running';
  $('path-report').replaceChildren(el('li', { textContent: quiet === 0 ? 'checking for 5 s…' : 'checking; the quiet phase takes two heartbeats…' }));
  try {
    const report = await client.checkPath({ interval: 250, count: 20, quiet });
    $('path-report').replaceChildren(...describeReport(report).map((line) => el('li', { textContent: line })));
    $('path-report').dataset.state = report.delivery === 'bursts' || report.quietSurvived === false ? 'bad' : 'good';
    log(`path check: ${report.delivery}`);
  } catch (err) {
    $('path-report').replaceChildren(el('li', { className: 'failed', textContent: `check failed: ${err.message}` }));
    $('path-report').dataset.state = 'failed';
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

$('check-quick').addEventListener('click', () => runPathCheck(0));
$('check-full').addEventListener('click', () => runPathCheck('auto'));

// Already signed in (the cookie from an earlier visit)? The cookie is HttpOnly: ask whom it names.
fetch('/dev/login')
  .then((response) => (response.ok ? response.json() : undefined))
  .then((answer) => answer?.user && loggedIn(answer.user))
  .catch(() => undefined);
