import { createHash } from 'node:crypto';

// The live ops page: one HTML document with its style and script inline, no outside asset. Its
// CSP allows exactly these two by their hashes, and connections and images to its own origin.
// The script reads `GET /admin/events` (one `snapshot` event a second, see `Snapshot` in
// src/admin/view.ts) and draws everything itself: counts, three rate charts, the busiest
// topics, the last cuts. It writes text only (`textContent`), never HTML.

const STYLE = `
:root { color-scheme: light; --fg: #1d2330; --muted: #677083; --line: #dde1e8; --bg: #f6f7f9; --card: #fff; --ok: #17803d; --warn: #b45309; --bad: #b91c1c; --events: #2563eb; --deliveries: #7c3aed; --opens: #0f766e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 14px; margin: 0 0 8px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
#relay { color: var(--muted); }
#status { margin-left: auto; font-weight: 600; }
#status[data-state="live"] { color: var(--ok); }
#status[data-state="reconnecting"], #status[data-state="connecting"] { color: var(--warn); }
main { padding: 16px 20px; display: grid; gap: 16px; max-width: 1200px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
#counts { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.stat .label { display: block; color: var(--muted); font-size: 12px; }
.stat .value { display: block; font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat .sub { display: block; color: var(--muted); font-size: 12px; min-height: 1.4em; }
.value[data-state="ready"] { color: var(--ok); }
.value[data-state="not-ready"] { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 16px; }
figure { margin: 0; }
figcaption { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px; }
figcaption b { color: var(--fg); font-size: 16px; font-variant-numeric: tabular-nums; }
svg { display: block; width: 100%; height: 70px; border-bottom: 1px solid var(--line); background: linear-gradient(var(--bg) 1px, transparent 1px) 0 0 / 100% 25%; }
polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
figure[data-series="events"] polyline { stroke: var(--events); }
figure[data-series="deliveries"] polyline { stroke: var(--deliveries); }
figure[data-series="opens"] polyline { stroke: var(--opens); }
.axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 11px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.name { white-space: normal; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
td.empty { color: var(--muted); text-align: center; }
td[data-upstream="reconnecting"], td[data-reason="slow_client"], td[data-reason="limit"] { color: var(--warn); font-weight: 600; }
td[data-upstream="finished"] { color: var(--muted); }
td[data-reason="ended_by_app"], td[data-reason="token_expired"] { color: var(--events); font-weight: 600; }
th.number, td.number { text-align: right; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var byId = function (id) { return document.getElementById(id); };
  var SERIES = ['events', 'deliveries', 'opens'];
  var WIDTH = 300;
  var HEIGHT = 60;

  function number(value) {
    if (value >= 100 || value === Math.round(value)) return String(Math.round(value));
    return value.toFixed(value >= 10 ? 1 : 2);
  }
  function bytes(value) {
    if (value >= 1048576) return (value / 1048576).toFixed(1) + ' MiB';
    if (value >= 1024) return (value / 1024).toFixed(1) + ' KiB';
    return value + ' B';
  }
  function clock(iso) {
    return iso === null ? '–' : new Date(iso).toLocaleTimeString();
  }
  function set(id, value) {
    byId(id).textContent = String(value);
  }
  function cell(value, className, dataName, dataValue) {
    var td = document.createElement('td');
    td.textContent = String(value);
    if (className) td.className = className;
    if (dataName) td.setAttribute('data-' + dataName, dataValue);
    return td;
  }
  function fill(tableId, rows, columns, emptyText) {
    var body = byId(tableId).tBodies[0];
    if (rows.length === 0) {
      var tr = document.createElement('tr');
      var td = cell(emptyText, 'empty');
      td.colSpan = columns;
      tr.appendChild(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren.apply(body, rows);
  }
  function chart(name, points, spanSeconds) {
    var figure = document.querySelector('figure[data-series="' + name + '"]');
    var max = 1;
    for (var i = 0; i < points.length; i++) if (points[i] > max) max = points[i];
    var step = WIDTH / Math.max(1, spanSeconds - 1);
    var start = WIDTH - (points.length - 1) * step;
    var coords = points.map(function (point, index) {
      return (start + index * step).toFixed(1) + ',' + (HEIGHT - (point / max) * (HEIGHT - 2) - 1).toFixed(1);
    });
    figure.querySelector('polyline').setAttribute('points', coords.join(' '));
    figure.querySelector('.now').textContent = number(points.length === 0 ? 0 : points[points.length - 1]);
    figure.querySelector('.max').textContent = 'max ' + number(max === 1 && points.every(function (p) { return p === 0; }) ? 0 : max) + '/s';
  }

  function render(s) {
    var relay = s.relay;
    set('relay', (relay.id === null ? '' : 'relay ' + relay.id.slice(0, 8) + ' · ') + relay.hostname + ' · pid ' + relay.pid + ' · up since ' + new Date(relay.startedAt).toLocaleString());
    var streams = s.streams;
    set('streams', streams.shared + streams.multiplexed + streams.posts + streams.other);
    set('streams-detail', streams.shared + ' shared · ' + streams.multiplexed + ' multiplexed · ' + streams.posts + ' posts' + (streams.other > 0 ? ' · ' + streams.other + ' other' : ''));
    set('topics-count', s.topics);
    set('users', s.users);
    set('upstreams', s.upstreams.open + s.upstreams.reconnecting + s.upstreams.following);
    set('upstreams-detail', s.upstreams.open + ' open · ' + s.upstreams.reconnecting + ' reconnecting' + (s.upstreams.following > 0 ? ' · ' + s.upstreams.following + ' following' : '') + ' · ' + s.upstreams.finished + ' finished');
    set('connections', s.connections.open);
    set('connections-detail', 'of ' + s.connections.limit + ' (' + Math.round((100 * s.connections.open) / Math.max(1, s.connections.limit)) + ' %)');
    set('ready', s.ready === 'ready' ? 'ready' : 'not ready');
    byId('ready').setAttribute('data-state', s.ready === 'ready' ? 'ready' : 'not-ready');
    set('ready-detail', s.ready === 'ready' ? '' : s.ready);
    set('members', s.cluster === null ? 'alone' : s.cluster.members === null ? '?' : s.cluster.members.length);
    set('members-detail', s.cluster === null ? 'no REDIS_URL' : s.cluster.members === null ? 'Redis does not answer' : s.cluster.members.map(function (m) { return m.hostname + ':' + m.pid; }).join(' · '));

    // The charts span what the relay has sampled so far, from a minute up to the whole window.
    var span = Math.min(s.windowSeconds, Math.max(60, s.rates.events.length));
    SERIES.forEach(function (name) { chart(name, s.rates[name], span); });
    set('window', span < 120 ? span + ' seconds' : Math.round(span / 60) + ' minutes');
    var start = '−' + (span < 120 ? span + ' s' : Math.round(span / 60) + ' min');
    document.querySelectorAll('.span-start').forEach(function (label) { label.textContent = start; });

    fill('topics', s.busiest.map(function (t) {
      var tr = document.createElement('tr');
      tr.append(cell(t.topic, 'name'), cell(t.subscribers, 'number'), cell(t.upstream, '', 'upstream', t.upstream), cell(clock(t.lastEventAt)), cell(t.history.events + ' events · ' + bytes(t.history.bytes)));
      return tr;
    }), 5, 'no topic open');

    fill('cuts', s.cuts.map(function (c) {
      var tr = document.createElement('tr');
      var reason = c.reason + (c.detail === null ? '' : ' (' + c.detail + ')');
      tr.append(cell(clock(c.at)), cell(reason, '', 'reason', c.reason), cell(c.user === null ? 'no valid token' : c.user, 'name'), cell(c.count > 1 ? '×' + c.count : ''));
      return tr;
    }), 4, 'no cut yet');
    set('updated', clock(s.at));
  }

  var status = byId('status');
  function state(name, label) {
    status.setAttribute('data-state', name);
    status.textContent = label;
  }
  var source = new EventSource('events');
  source.addEventListener('snapshot', function (event) {
    render(JSON.parse(event.data));
    state('live', 'live');
  });
  source.onerror = function () {
    state('reconnecting', 'reconnecting…');
  };
})();
`;

const BODY = `<header><h1>sse-relay</h1><span id="relay"></span><span id="status" data-state="connecting">connecting…</span></header>
<main>
<section id="counts" aria-label="Now">
<div class="stat"><span class="label">open streams</span><span class="value" id="streams">–</span><span class="sub" id="streams-detail"></span></div>
<div class="stat"><span class="label">topics</span><span class="value" id="topics-count">–</span><span class="sub">held now</span></div>
<div class="stat"><span class="label">users</span><span class="value" id="users">–</span><span class="sub">with a stream open</span></div>
<div class="stat"><span class="label">upstreams</span><span class="value" id="upstreams">–</span><span class="sub" id="upstreams-detail"></span></div>
<div class="stat"><span class="label">connection slots</span><span class="value" id="connections">–</span><span class="sub" id="connections-detail"></span></div>
<div class="stat"><span class="label">readiness</span><span class="value" id="ready">–</span><span class="sub" id="ready-detail"></span></div>
<div class="stat"><span class="label">cluster</span><span class="value" id="members">–</span><span class="sub" id="members-detail"></span></div>
</section>
<section aria-label="Rates">
<h2>Per second, last <span id="window">minutes</span> · updated <span id="updated">–</span></h2>
<div class="charts">
<figure data-series="events"><figcaption><span>events <b class="now">0</b></span><span class="max"></span></figcaption><svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="events per second"><polyline points=""></polyline></svg><div class="axis"><span class="span-start">−1 min</span><span>now</span></div></figure>
<figure data-series="deliveries"><figcaption><span>deliveries <b class="now">0</b></span><span class="max"></span></figcaption><svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="deliveries per second"><polyline points=""></polyline></svg><div class="axis"><span class="span-start">−1 min</span><span>now</span></div></figure>
<figure data-series="opens"><figcaption><span>stream opens <b class="now">0</b></span><span class="max"></span></figcaption><svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="stream opens per second"><polyline points=""></polyline></svg><div class="axis"><span class="span-start">−1 min</span><span>now</span></div></figure>
</div>
</section>
<section><h2>Busiest topics</h2><table id="topics"><thead><tr><th>topic</th><th class="number">subscribers</th><th>upstream</th><th>last event</th><th>history</th></tr></thead><tbody></tbody></table></section>
<section><h2>Last cuts: slow clients, limits, token expiries, users ended</h2><table id="cuts"><thead><tr><th>when</th><th>reason</th><th>user</th><th></th></tr></thead><tbody></tbody></table></section>
</main>`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** The ops page, served at `GET /admin/`. */
export const OPS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>sse-relay ops</title>
<link rel="icon" href="icon.svg" type="image/svg+xml">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page's Content-Security-Policy: its own inline style and script (by hash), and its own origin for the rest. */
export const OPS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The page's icon, so that the browser does not go looking for one elsewhere. */
export const OPS_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2563eb"/><path d="M2 11h3l2-6 2 8 2-4h3" fill="none" stroke="#fff" stroke-width="1.5"/></svg>`;
