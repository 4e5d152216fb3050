/**
 * The dashboard page: one HTML document, inline style and script (allowed by a nonce), no build
 * step and nothing fetched from elsewhere. Breaker names only ever reach the page as data and
 * are shown with `textContent`, never as HTML; the store description, the one server-side value,
 * is escaped.
 */

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

const STYLE = `
:root { --open: #d64545; --half: #e0a526; --closed: #2f9e5b; --forced: #6b5bd6; --muted: #6b7280;
  --line: #e5e7eb; --bg: #f8fafc; font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; }
body { margin: 0; background: var(--bg); color: #111827; }
header { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; padding: 12px 20px;
  background: #111827; color: #f9fafb; }
header h1 { font-size: 16px; margin: 0; }
header .store { color: #cbd5e1; }
#health { padding: 2px 8px; border-radius: 10px; background: var(--closed); font-size: 12px; }
#health.down { background: var(--open); }
#summary { color: #e5e7eb; }
#token-form { margin-left: auto; display: flex; gap: 6px; align-items: center; }
#token-form input { width: 16em; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 280px; gap: 20px; padding: 20px; }
section.group { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin-bottom: 16px; }
section.group h2 { font-size: 14px; margin: 0; padding: 8px 12px; border-bottom: 1px solid var(--line);
  display: flex; gap: 12px; }
section.group h2 .meta { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.name { font-family: ui-monospace, monospace; max-width: 40ch; overflow: hidden; text-overflow: ellipsis; }
.scroll { overflow-x: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.badge.closed { background: var(--closed); } .badge.open { background: var(--open); }
.badge.half-open { background: var(--half); } .badge.forced-open { background: var(--open); }
.badge.forced-closed { background: var(--forced); }
.override { color: var(--muted); font-size: 12px; margin-left: 4px; }
td.actions button { font-size: 11px; margin-right: 2px; padding: 1px 5px; }
aside { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 0 12px;
  align-self: start; max-height: calc(100vh - 120px); overflow: auto; }
aside h2 { font-size: 14px; }
aside ol { list-style: none; padding: 0; margin: 0 0 12px; }
aside li { padding: 4px 0; border-bottom: 1px solid var(--line); font-size: 12px; }
aside li .when { color: var(--muted); }
aside li .who { font-family: ui-monospace, monospace; word-break: break-all; }
#message { min-height: 1.4em; padding: 0 20px; margin-top: 8px; }
#message.error { color: var(--open); }
.empty { color: var(--muted); padding: 20px; }
`;

/** The page's script. Plain ES2020, no template literals (this file is one). */
const SCRIPT = `
'use strict';
var rows = new Map();
var timeline = [];
var received = new Map();
var token = sessionStorage.getItem('circuitry-token') || '';
var hash = new URLSearchParams(location.hash.slice(1));
if (hash.get('token')) {
  token = hash.get('token');
  sessionStorage.setItem('circuitry-token', token);
  history.replaceState(null, '', location.pathname);
}
var $ = function (id) { return document.getElementById(id); };
function el(tag, attrs, children) {
  var node = document.createElement(tag);
  if (attrs) for (var k in attrs) {
    if (k === 'text') node.textContent = attrs[k];
    else if (k === 'className') node.className = attrs[k];
    else node.setAttribute(k, attrs[k]);
  }
  (children || []).forEach(function (c) { if (c) node.appendChild(c); });
  return node;
}
function baseName(name) { var i = name.indexOf('/'); return i === -1 ? name : name.slice(0, i); }
function shown(row) { return row.override === 'metrics-only' ? row.state + ' (metrics-only)' : row.circuitState; }
function rank(row) {
  if (row.circuitState === 'open' || row.circuitState === 'forced-open') return 0;
  if (row.state === 'half-open') return 1;
  return 2;
}
function byUrgency(a, b) { return rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0); }
function rate(r) { return (r * 100).toFixed(r === 0 || r === 1 ? 0 : 1) + '%'; }
function duration(ms) {
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
  return (ms / 60000).toFixed(1) + ' min';
}
function effective(row) {
  if (row.override === 'forced-open') return 'open';
  if (row.override === 'forced-closed' || row.override === 'metrics-only') return 'closed';
  return row.state;
}
function retryText(row) {
  if (row.circuitState === 'forced-open' && row.overrideUntil > 0) {
    var lapse = row.overrideUntil - row.readAt - (Date.now() - (received.get(row.name) || Date.now()));
    return lapse > 0 ? duration(lapse) + ' (then half-open)' : 'due';
  }
  if (row.circuitState === 'forced-open') return 'until cleared';
  if (row.state !== 'open' || row.override === 'metrics-only' || row.override === 'forced-closed') return '-';
  var left = row.retryAfterMs - (Date.now() - (received.get(row.name) || Date.now()));
  return left > 0 ? duration(left) : 'due';
}
function setMessage(text, error) {
  var m = $('message');
  m.textContent = text;
  m.className = error ? 'error' : '';
}
function act(name, action) {
  var headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  setMessage(action + ' ' + name + '...', false);
  fetch('/api/action', { method: 'POST', headers: headers, body: JSON.stringify({ name: name, action: action }) })
    .then(function (res) {
      return res.json().then(function (body) {
        if (res.ok) {
          setMessage(action + ' ' + name + ': ' + (body.before ? shown(body.before) : 'no record') + ' -> ' + shown(body.after), false);
        } else {
          setMessage('refused: ' + (body.error || res.status), true);
        }
      });
    })
    .catch(function (e) { setMessage('failed: ' + e.message, true); });
}
var ACTIONS = [['open', 'force open'], ['close', 'force closed'], ['metrics-only', 'metrics only'], ['clear', 'clear override'], ['reset', 'start afresh: closed, counts forgotten, override kept']];
function rowNode(row) {
  var buttons = ACTIONS.map(function (a) {
    var b = el('button', { type: 'button', 'data-action': a[0], title: a[1], text: a[0] });
    b.addEventListener('click', function () { act(row.name, a[0]); });
    return b;
  });
  var badge = el('span', { className: 'badge ' + row.circuitState, text: row.circuitState });
  // Under forced-open or forced-closed, the computed state still moves; metrics-only is shown beside it.
  var note = row.override === 'metrics-only' ? 'metrics-only' : row.override ? 'computed ' + row.state : '';
  // Why it was set (an openFor from a Retry-After, an operator's --reason) and for how long.
  if (row.override && row.overrideReason) note += (note ? '; ' : '') + row.overrideReason;
  // Calls in flight under maxConcurrent, and what an adaptive throttle last reported.
  if (row.activeSlots > 0) note += (note ? '; ' : '') + row.activeSlots + ' in flight (slots)';
  if (row.throttle) {
    note += (note ? '; ' : '') + 'throttling ' + Math.round(row.throttle.rate * 100) + '% (reported ' +
      duration(Math.max(0, row.readAt - row.throttle.reportedAt)) + ' ago)';
  }
  var retry = el('td', { className: 'num retry', text: retryText(row) });
  retry.dataset.name = row.name;
  var tr = el('tr', { 'data-state': row.state, 'data-circuit-state': row.circuitState }, [
    el('td', { className: 'name', text: row.name, title: row.name }),
    el('td', null, [badge, note ? el('span', { className: 'override', text: note }) : null]),
    // An empty window with a run of failures kept (a consecutive-failures policy counts runs, not
    // calls in a window): the run is what there is to see.
    row.counts.total === 0 && row.counts.consecutiveFailures > 0
      ? el('td', { className: 'num run', text: 'run of ' + row.counts.consecutiveFailures, title: 'no calls in the window; a run of ' + row.counts.consecutiveFailures + ' consecutive failures is kept' })
      : el('td', { className: 'num', text: row.counts.failures + '/' + row.counts.total }),
    el('td', { className: 'num', text: rate(row.counts.failureRate) }),
    el('td', { className: 'num', text: String(row.counts.consecutiveFailures) }),
    retry,
    el('td', { className: 'actions' }, buttons),
  ]);
  tr.dataset.name = row.name;
  return tr;
}
var pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(function () {
    pending = false;
    var groups = new Map();
    rows.forEach(function (row) {
      var g = baseName(row.name);
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(row);
    });
    var list = Array.from(groups.entries()).map(function (e) { e[1].sort(byUrgency); return e; });
    list.sort(function (a, b) { return byUrgency(a[1][0], b[1][0]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0); });
    // Counted as callers see them (forced-open is open; forced-closed and metrics-only admit
    // every call, so closed), with the computed states beside when an override makes them differ.
    var seen = { open: 0, 'half-open': 0, closed: 0 }, computed = { open: 0, 'half-open': 0, closed: 0 };
    rows.forEach(function (r) { seen[effective(r)]++; computed[r.state]++; });
    var counts = function (c) { return c.open + ' open, ' + c['half-open'] + ' half-open, ' + c.closed + ' closed'; };
    var differs = seen.open !== computed.open || seen['half-open'] !== computed['half-open'];
    $('summary').textContent = rows.size + (rows.size === 1 ? ' breaker: ' : ' breakers: ') + counts(seen) + (differs ? ' (computed: ' + counts(computed) + ')' : '');
    var container = $('groups');
    container.replaceChildren();
    if (list.length === 0) container.appendChild(el('p', { className: 'empty', text: 'No breakers in the store yet: a breaker gets a record when it first fails or is forced.' }));
    list.forEach(function (entry) {
      var groupRows = entry[1];
      var gOpen = groupRows.filter(function (r) { return rank(r) === 0; }).length;
      var head = el('tr', null, ['breaker', 'state', 'failed/calls', 'rate', 'in a row', 'retry after', 'actions'].map(function (h) { return el('th', { text: h }); }));
      var section = el('section', { className: 'group' }, [
        el('h2', null, [el('span', { text: entry[0] }), el('span', { className: 'meta', text: groupRows.length + (groupRows.length === 1 ? ' breaker' : ' breakers') + (gOpen ? ', ' + gOpen + ' open' : '') })]),
        el('div', { className: 'scroll' }, [el('table', null, [el('thead', null, [head]), el('tbody', null, groupRows.map(rowNode))])]),
      ]);
      section.dataset.base = entry[0];
      container.appendChild(section);
    });
  });
}
function renderTimeline() {
  var ol = $('timeline');
  ol.replaceChildren();
  timeline.slice(-100).reverse().forEach(function (t) {
    ol.appendChild(el('li', null, [
      el('span', { className: 'when', text: new Date(t.at).toLocaleTimeString() + ' ' }),
      el('span', { className: 'who', text: t.name }),
      el('div', { text: t.from + ' \\u2192 ' + t.to }),
    ]));
  });
}
function upsert(list) {
  var now = Date.now();
  list.forEach(function (r) { rows.set(r.name, r); received.set(r.name, now); });
}
function health(h) {
  var node = $('health');
  node.textContent = h.ok ? 'live' : 'store unreachable: ' + h.message;
  node.className = h.ok ? '' : 'down';
}
var source = new EventSource('/events');
source.addEventListener('snapshot', function (e) {
  var data = JSON.parse(e.data);
  rows.clear();
  upsert(data.rows);
  timeline = data.timeline;
  health(data.health);
  render();
  renderTimeline();
});
source.addEventListener('rows', function (e) { upsert(JSON.parse(e.data).rows); render(); });
source.addEventListener('removed', function (e) {
  JSON.parse(e.data).names.forEach(function (n) { rows.delete(n); received.delete(n); });
  render();
});
source.addEventListener('transition', function (e) {
  timeline.push(JSON.parse(e.data).entry);
  if (timeline.length > 200) timeline.shift();
  renderTimeline();
});
source.addEventListener('health', function (e) { health(JSON.parse(e.data)); });
source.onerror = function () { health({ ok: false, message: 'reconnecting to the dashboard' }); };
setInterval(function () {
  document.querySelectorAll('td.retry').forEach(function (td) {
    var row = rows.get(td.dataset.name);
    if (row) td.textContent = retryText(row);
  });
}, 250);
var input = $('token');
input.value = token;
$('token-form').addEventListener('submit', function (e) {
  e.preventDefault();
  token = input.value.trim();
  if (token) sessionStorage.setItem('circuitry-token', token); else sessionStorage.removeItem('circuitry-token');
  setMessage(token ? 'token set: actions enabled' : 'token cleared: read-only', false);
});
`;

export function renderPage(options: { nonce: string; store: string }): string {
  const nonce = escapeHtml(options.nonce);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>circuitry dashboard</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>circuitry</h1>
  <span class="store">${escapeHtml(options.store)}</span>
  <span id="health">connecting</span>
  <span id="summary"></span>
  <form id="token-form" autocomplete="off">
    <label for="token">token</label>
    <input id="token" type="password" placeholder="for actions; printed at start">
    <button type="submit">set</button>
  </form>
</header>
<div id="message" role="status"></div>
<main>
  <div id="groups"></div>
  <aside><h2>Recent transitions</h2><ol id="timeline"></ol></aside>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
