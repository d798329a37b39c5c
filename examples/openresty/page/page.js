// examples/openresty/page/page.js: the live page of the OpenResty example.
// Reads the example's own endpoints only: GET /maps and /page/views (the list,
// every 5 s), GET /maps/<ref> (the chosen map, every second: the rate of each
// entry comes from two reads), GET /events and the server-sent events of
// GET /events/<name> (the tail). Every failure is shown on the page.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const SVGNS = 'http://www.w3.org/2000/svg';
  const MAP_EVERY = 1000;   // ms between two reads of the chosen map
  const LIST_EVERY = 5000;  // ms between two reads of the map list
  const MAX_ROWS = 2000;    // entries shown at most (sorted first)
  const MAX_HISTS = 16;     // histograms drawn at most (one per entry of a slots map)
  const MAX_EVENTS = 200;   // events kept in the tail

  // ---------------------------------------------------------------- errors
  // Errors of the page itself (exceptions, console.error) are listed in
  // #console-errors, hidden, for the browser test to read.
  const pageErrors = [];
  function recordError(msg) {
    pageErrors.push(String(msg));
    $('console-errors').textContent = pageErrors.join('\n');
  }
  window.addEventListener('error', (e) => recordError('error: ' + e.message));
  window.addEventListener('unhandledrejection', (e) =>
    recordError('unhandled rejection: ' + (e.reason && e.reason.message || e.reason)));
  const consoleError = console.error.bind(console);
  console.error = (...args) => { recordError(args.join(' ')); consoleError(...args); };

  // errors of the server, by source: shown in #errors until that source works again
  const serverErrors = new Map();
  function setError(source, msg) {
    if (msg) serverErrors.set(source, msg); else serverErrors.delete(source);
    const box = $('errors');
    box.textContent = '';
    for (const m of serverErrors.values()) {
      const div = document.createElement('div');
      div.textContent = m;
      box.appendChild(div);
    }
  }

  class HttpError extends Error {
    constructor(url, status, body) {
      super(url + ': HTTP ' + status);
      this.url = url; this.status = status; this.body = body;
    }
  }
  const STATUS_TEXT = {
    400: 'bad request', 403: 'forbidden: this server may not read it', 404: 'not found (gone?)',
    409: 'ambiguous', 500: 'server error', 502: 'bad gateway', 503: 'unavailable',
  };
  function explain(err) {
    if (err instanceof HttpError) {
      return `GET ${err.url}: ${err.status} ${STATUS_TEXT[err.status] || 'error'}` +
        (err.body ? ': ' + err.body : '');
    }
    return err.message;
  }

  async function getJSON(url) {
    let res;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      markServer(false);
      throw new Error(`GET ${url}: the server does not answer (${e.message})`);
    }
    markServer(true);
    const body = await res.text();
    if (!res.ok) throw new HttpError(url, res.status, body.trim());
    try {
      return JSON.parse(body);
    } catch (e) {
      throw new Error(`GET ${url}: the answer is not JSON (${e.message})`);
    }
  }

  let serverUp = null;
  function markServer(up) {
    if (up === serverUp && up) return;
    serverUp = up;
    const st = $('status');
    st.classList.toggle('down', !up);
    st.textContent = up ? 'connected' : 'server unreachable since ' + new Date().toLocaleTimeString();
    if (!up) setError('server', 'The server does not answer: is nginx still running?');
    else setError('server', null);
  }

  // ---------------------------------------------------------------- values
  // Integers beyond 2^53 arrive as decimal strings (mapserver.lua): sums and
  // differences of integers are exact, with BigInt.
  const isIntText = (v) => typeof v === 'string' && /^-?\d+$/.test(v);
  const isInt = (v) => (typeof v === 'number' && Number.isInteger(v)) || isIntText(v);
  function fromBig(b) {
    return (b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= -BigInt(Number.MAX_SAFE_INTEGER))
      ? Number(b) : b.toString();
  }

  // the sum of the per-CPU copies of a value: numbers added, structs and
  // arrays field by field; anything else kept when every CPU agrees
  function sumValues(list) {
    if (list.length === 0) return null;
    if (list.every(isInt)) {
      let s = 0n;
      for (const v of list) s += BigInt(v);
      return fromBig(s);
    }
    if (list.every((v) => typeof v === 'number')) return list.reduce((a, b) => a + b, 0);
    if (list.every(Array.isArray)) {
      const n = Math.max(...list.map((a) => a.length));
      const out = [];
      for (let i = 0; i < n; i++) out.push(sumValues(list.map((a) => a[i]).filter((x) => x !== undefined)));
      return out;
    }
    if (list.every((v) => v !== null && typeof v === 'object')) {
      const out = {};
      for (const k of Object.keys(list[0])) out[k] = sumValues(list.map((o) => o[k]));
      return out;
    }
    return list.every((v) => v === list[0]) ? list[0] : '(differs per CPU)';
  }

  // a decoded key or value as text
  function text(v, top = true) {
    if (v === null || v === undefined) return top ? '' : 'null';
    if (typeof v === 'string') return top || isIntText(v) ? v : JSON.stringify(v);
    if (typeof v !== 'object') return String(v);
    if (Array.isArray(v)) return '[' + v.map((x) => text(x, false)).join(', ') + ']';
    return '{' + Object.keys(v).map((k) => k + ': ' + text(v[k], false)).join(', ') + '}';
  }

  // per second, from two reads: a number, or for structs { field: rate } of
  // the fields that changed; null when nothing numeric is there
  function rateOf(cur, prev, dt) {
    if (isInt(cur) && isInt(prev)) return Number(BigInt(cur) - BigInt(prev)) / dt;
    if (typeof cur === 'number' && typeof prev === 'number') return (cur - prev) / dt;
    if (cur && prev && typeof cur === 'object' && typeof prev === 'object') {
      const out = {};
      let any = false;
      for (const k of Object.keys(cur)) {
        const r = rateOf(cur[k], prev[k], dt);
        if (r === null) continue;
        any = true;
        if (typeof r === 'number' ? r !== 0 : Object.keys(r).length > 0) out[k] = r;
      }
      return any ? out : null;
    }
    return null;
  }
  function rateNumber(r) { // for sorting: a struct's rate is the sum of its fields' sizes
    if (r === null || r === undefined) return -Infinity;
    if (typeof r === 'number') return r;
    return Object.values(r).reduce((a, x) => a + Math.abs(rateNumber(x)), 0);
  }
  function fmtRate(r) {
    if (typeof r === 'number') {
      const a = Math.abs(r);
      const s = a >= 100 || Number.isInteger(r) ? Math.round(r).toString() : r.toFixed(1);
      return (r > 0 ? '+' : '') + s + '/s';
    }
    const parts = Object.keys(r).map((k) => k + ' ' + fmtRate(r[k]));
    return parts.length ? parts.join(', ') : '0/s';
  }

  function compare(a, b) {
    if (isInt(a) && isInt(b)) {
      const x = BigInt(a), y = BigInt(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return text(a).localeCompare(text(b), undefined, { numeric: true });
  }

  // ---------------------------------------------------------------- state
  const S = {
    maps: [], views: new Map(), ncpus: 1,
    ref: new URLSearchParams(location.search).get('map'),
    data: null, prev: null, rows: [],
    sort: { col: 'key', desc: false },
    percpu: false, paused: false, allMaps: false,
  };

  function findMap(ref) {
    if (ref === null) return null;
    return S.maps.find((m) => String(m.id) === ref || m.name === ref) ||
      [...S.views.values()].find((v) => v.path && v.path.split('/').pop() === ref) || null;
  }

  // ---------------------------------------------------------------- the list
  async function refreshList() {
    try {
      const [maps, views] = await Promise.all([getJSON('/maps'), getJSON('/page/views')]);
      S.maps = maps;
      S.ncpus = views.ncpus;
      S.views = new Map(views.maps.map((v) => [v.id, v]));
      setError('list', null);
      if (S.ref === null) {
        const first = views.maps[0];
        if (first) choose(refFor(first));
      }
      renderList();
    } catch (e) {
      setError('list', explain(e));
    }
  }

  // the name when no other listed map has it, else the id
  function refFor(m) {
    const same = S.maps.filter((x) => x.name === m.name).length;
    return m.name && same <= 1 ? m.name : String(m.id);
  }

  function td(textContent, cls) {
    const c = document.createElement('td');
    c.textContent = textContent;
    if (cls) c.className = cls;
    return c;
  }
  function tag(label) {
    const s = document.createElement('span');
    s.className = 'tag';
    s.textContent = label;
    return s;
  }

  function renderList() {
    const body = $('maps').tBodies[0];
    body.textContent = '';
    const cur = findMap(S.ref);
    const maps = [...S.maps].sort((a, b) => (b.served - a.served) || (a.id - b.id))
      .filter((m) => S.allMaps || m.served || (cur && cur.id === m.id));
    for (const m of maps) {
      const v = S.views.get(m.id);
      const tr = document.createElement('tr');
      tr.dataset.id = m.id;
      if (!m.served) tr.classList.add('unserved');
      if (cur && cur.id === m.id) tr.classList.add('current');
      const name = td(m.name || '(no name)');
      if (v && v.hist) name.appendChild(tag(v.hist.scale + ' hist'));
      if (!m.served) tr.title = 'not served: only workers running as root may read it';
      tr.append(name, td(m.type), td(String(m.max_entries), 'num'),
        td(`${m.key_size}/${m.value_size} B`, 'num'), td(String(m.id), 'num'));
      tr.addEventListener('click', () => choose(refFor(m)));
      body.appendChild(tr);
    }
  }

  // ---------------------------------------------------------------- one map
  function choose(ref) {
    if (ref === S.ref && S.data) return;
    S.ref = ref;
    S.data = null; S.prev = null; S.rows = [];
    history.replaceState(null, '', '?map=' + encodeURIComponent(ref));
    $('map-title').textContent = ref;
    $('map-info').textContent = 'reading…';
    $('map-error').textContent = '';
    $('hist').textContent = '';
    $('entries').tHead.textContent = '';
    $('entries').tBodies[0].textContent = '';
    renderList();
    refreshMap();
  }

  // One read of the chosen map at a time: the next starts MAP_EVERY after the
  // last one ended, so a map that takes longer than that to read never piles
  // up requests on the server; a map chosen during a read is read right after.
  let mapTimer = null, mapBusy = false, mapAgain = false;
  async function refreshMap() {
    clearTimeout(mapTimer);
    if (mapBusy) { mapAgain = true; return; }
    mapBusy = true;
    try {
      await readMap();
    } finally {
      mapBusy = false;
      if (mapAgain) { mapAgain = false; refreshMap(); } else mapTimer = setTimeout(refreshMap, MAP_EVERY);
    }
  }

  async function readMap() {
    if (S.ref === null || S.paused) return;
    const ref = S.ref;
    let data, hist = null;
    const found = findMap(ref);
    const view = found && S.views.get(found.id);
    try {
      [data, hist] = await Promise.all([getJSON('/maps/' + encodeURIComponent(ref)),
        view && view.hist ? getJSON('/page/hist/' + view.id) : null]);
    } catch (e) {
      if (ref === S.ref) {
        $('map-error').textContent = explain(e);
        $('map-info').textContent = S.data ? 'the entries below are from the last good read' : '';
      }
      return;
    }
    if (ref !== S.ref) return;
    $('map-error').textContent = '';
    update(data, hist, performance.now());
  }

  function update(data, hist, now) {
    const info = data.map;
    const percpu = !!info.percpu;
    const prev = S.prev;
    const next = new Map();
    const dt = prev ? (now - prev.t) / 1000 : 0;
    S.rows = data.entries.map((e) => {
      const keyText = text(e.key);
      const value = percpu && Array.isArray(e.value) ? sumValues(e.value) : e.value;
      next.set(keyText, value);
      const before = prev && prev.values.get(keyText);
      const rate = prev ? (before === undefined ? 'new' : rateOf(value, before, dt)) : null;
      return { key: e.key, keyText, value, cpus: percpu ? e.value : null, rate };
    });
    S.prev = { t: now, values: next };
    S.data = data;
    const v = S.views.get(info.id);
    $('map-title').textContent = `${info.name || S.ref} (id ${info.id})`;
    $('map-info').textContent = `${info.type}, ${data.count} of ${info.max_entries} entries, ` +
      `key ${info.key_size} B${info.key_codec ? ' (' + info.key_codec + ')' : ''}, ` +
      `value ${info.value_size} B${info.value_codec ? ' (' + info.value_codec + ')' : ''}` +
      (percpu ? `, per CPU (${S.ncpus} CPUs, summed)` : '') +
      (v && v.hist ? `, a ${v.hist.scale} histogram (by ${v.hist.by === 'list' ? 'the served list' : 'its layout'})` : '');
    $('percpu').disabled = !percpu;
    $('map-updated').textContent = 'read at ' + new Date().toLocaleTimeString();
    renderHist(hist);
    renderEntries();
  }

  function columns() {
    const cols = [{ id: 'key', label: 'key' }];
    const percpu = S.data && S.data.map.percpu;
    if (percpu && S.percpu) {
      cols.push({ id: 'value', label: 'sum', num: true });
      for (let c = 0; c < S.ncpus; c++) cols.push({ id: 'cpu' + c, label: 'cpu ' + c, num: true, cpu: c });
    } else {
      cols.push({ id: 'value', label: percpu ? 'value (sum)' : 'value', num: true });
    }
    cols.push({ id: 'rate', label: 'rate', num: true });
    return cols;
  }

  function sortValue(row, col) {
    if (col === 'key') return row.key;
    if (col === 'value') return row.value;
    if (col === 'rate') return row.rate === 'new' ? Infinity : rateNumber(row.rate);
    const c = Number(col.slice(3));
    return row.cpus ? row.cpus[c] : null;
  }

  function renderEntries() {
    const table = $('entries');
    const cols = columns();
    if (!cols.some((c) => c.id === S.sort.col)) S.sort = { col: 'key', desc: false };
    const head = document.createElement('tr');
    for (const c of cols) {
      const th = document.createElement('th');
      th.textContent = c.label;
      th.dataset.col = c.id;
      if (c.num) th.classList.add('num');
      if (S.sort.col === c.id) th.classList.add('sorted', ...(S.sort.desc ? ['desc'] : []));
      th.addEventListener('click', () => {
        S.sort = { col: c.id, desc: S.sort.col === c.id ? !S.sort.desc : c.id !== 'key' };
        renderEntries();
      });
      head.appendChild(th);
    }
    table.tHead.textContent = '';
    table.tHead.appendChild(head);
    const rows = [...S.rows];
    const sign = S.sort.desc ? -1 : 1;
    rows.sort((a, b) => {
      const x = sortValue(a, S.sort.col), y = sortValue(b, S.sort.col);
      return sign * (typeof x === 'number' && typeof y === 'number' ? (x - y) || 0 : compare(x, y));
    });
    const body = document.createElement('tbody');
    for (const r of rows.slice(0, MAX_ROWS)) {
      const tr = document.createElement('tr');
      tr.dataset.key = r.keyText;
      for (const c of cols) {
        if (c.id === 'key') tr.appendChild(td(r.keyText, 'key'));
        else if (c.id === 'value') tr.appendChild(td(text(r.value), 'value num'));
        else if (c.id === 'rate') {
          const t = r.rate === null ? '' : r.rate === 'new' ? 'new' : fmtRate(r.rate);
          const n = r.rate === 'new' ? 0 : rateNumber(r.rate);
          tr.appendChild(td(t, 'rate num' + (n > 0 ? ' up' : n < 0 && n !== -Infinity ? ' down' : '')));
        } else tr.appendChild(td(r.cpus ? text(r.cpus[c.cpu]) : '', 'cpu num'));
      }
      body.appendChild(tr);
    }
    if (rows.length > MAX_ROWS) {
      const tr = document.createElement('tr');
      const cell = td(`… ${rows.length - MAX_ROWS} more entries not shown (sort to see others)`, 'more');
      cell.colSpan = cols.length;
      tr.appendChild(cell);
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  // ---------------------------------------------------------------- histograms
  // a bucket's label: its bounds, as the server computed them (exact, as text past 2^53)
  const bucketLabel = (b) => (String(b.lo) === String(b.hi) ? String(b.lo) : `${b.lo} -> ${b.hi}`);
  const toNumber = (v) => (isInt(v) ? Number(v) : typeof v === 'number' ? v : 0);

  function svgEl(name, attrs, content) {
    const el = document.createElementNS(SVGNS, name);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (content !== undefined) el.textContent = content;
    return el;
  }

  // hist: GET /page/hist/<ref>, luaebpf.histogram's shape: { kind, step,
  // layout, histograms: [{ labels, buckets: [{ slot, lo, hi, count }], count }] }
  function renderHist(hist) {
    const box = $('hist');
    box.textContent = '';
    if (!hist) return;
    for (const hg of hist.histograms.slice(0, MAX_HISTS)) {
      const names = Object.keys(hg.labels || {});
      const h = {
        title: hist.layout === 'array' ? null : names.map((k) => `${k}=${hg.labels[k]}`).join(', '),
        counts: hg.buckets.map((b) => toNumber(b.count)),
      };
      let last = h.counts.length - 1;
      while (last > 0 && !(h.counts[last] > 0)) last--;
      const n = Math.max(last + 1, 1);
      const labels = [];
      for (let i = 0; i < n; i++) labels.push(hg.buckets[i] ? bucketLabel(hg.buckets[i]) : '');
      const max = Math.max(1, ...h.counts.slice(0, n));
      const rowH = 17, top = h.title !== null ? 20 : 4, labelW = 10 + 7.3 * Math.max(...labels.map((l) => l.length));
      const barW = 360, width = labelW + barW + 110;
      const svg = svgEl('svg', { class: 'hist', width, height: top + n * rowH + 4,
        viewBox: `0 0 ${width} ${top + n * rowH + 4}`, role: 'img' });
      if (h.title !== null) {
        svg.dataset.title = h.title;
        svg.appendChild(svgEl('text', { class: 'title', x: 2, y: 14 }, h.title));
      }
      for (let i = 0; i < n; i++) {
        const c = h.counts[i] || 0, y = top + i * rowH;
        svg.appendChild(svgEl('text', { class: 'label', x: labelW - 8, y: y + 12, 'text-anchor': 'end' }, labels[i]));
        const bar = svgEl('rect', { class: 'bar', x: labelW, y: y + 2, height: rowH - 4,
          width: (barW * c / max).toFixed(1) });
        bar.dataset.count = hg.buckets[i] ? String(hg.buckets[i].count) : '0';
        bar.dataset.bucket = labels[i];
        svg.appendChild(bar);
        svg.appendChild(svgEl('text', { class: 'count', x: labelW + barW + 8, y: y + 12 }, bar.dataset.count));
      }
      box.appendChild(svg);
    }
  }

  // ---------------------------------------------------------------- events
  const E = { es: null, name: null, lastId: null, received: 0, missed: 0, paused: false, cols: null };

  async function refreshStreams() {
    let list;
    try {
      list = await getJSON('/events');
      setError('events', null);
    } catch (e) {
      setError('events', explain(e));
      return;
    }
    const sel = $('stream');
    const names = list.map((s) => s.name);
    if (sel.options.length !== names.length || names.some((n, i) => sel.options[i].value !== n)) {
      sel.textContent = '';
      for (const n of names) sel.appendChild(new Option(n, n));
    }
    if (names.length === 0) {
      $('stream-state').textContent = 'no ring buffer is streamed (LUAEBPF_EVENTS)';
      $('pause').disabled = true;
      return;
    }
    $('pause').disabled = false;
    if (E.name === null || !names.includes(E.name)) openStream(names[0], null);
  }

  function openStream(name, since) {
    if (E.es) E.es.close();
    if (name !== E.name) {
      E.name = name; E.lastId = null; E.received = 0; E.missed = 0; E.cols = null;
      $('events').tHead.textContent = '';
      $('events').tBodies[0].textContent = '';
      $('received').textContent = '0';
      $('missed').textContent = '0';
      $('stream').value = name;
    }
    const url = '/events/' + encodeURIComponent(name) + (since !== null ? '?since=' + since : '');
    const es = new EventSource(url);
    E.es = es;
    $('stream-state').textContent = 'connecting…';
    es.onopen = () => {
      $('stream-state').textContent = 'streaming ' + name;
      $('events-error').textContent = '';
    };
    es.onmessage = (m) => {
      E.lastId = m.lastEventId;
      E.received++;
      $('received').textContent = String(E.received);
      let rec;
      try { rec = JSON.parse(m.data); } catch (e) { rec = { data: m.data }; }
      addEvent(m.lastEventId, rec);
    };
    es.addEventListener('missed', (m) => {
      try { E.missed += JSON.parse(m.data).missed || 0; } catch (e) { E.missed++; }
      $('missed').textContent = String(E.missed);
    });
    es.onerror = () => {
      if (es !== E.es) return;
      $('events-error').textContent = es.readyState === EventSource.CLOSED
        ? `GET ${url}: the stream ended and cannot be reopened (is '${name}' still streamed? GET /events)`
        : `GET ${url}: connection lost; reconnecting…`;
      $('stream-state').textContent = es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting…';
    };
  }

  function addEvent(seq, rec) {
    const table = $('events');
    const flat = rec !== null && typeof rec === 'object' && !Array.isArray(rec) ? rec : { record: rec };
    if (E.cols === null) {
      E.cols = Object.keys(flat);
      const tr = document.createElement('tr');
      for (const c of ['seq', 'received', ...E.cols]) {
        const th = document.createElement('th');
        th.textContent = c;
        tr.appendChild(th);
      }
      table.tHead.appendChild(tr);
    }
    const cells = E.cols.map((c) => text(flat[c]));
    const filter = $('event-filter').value;
    if (filter && !cells.some((c) => c.includes(filter))) return; // counted, not shown
    const tr = document.createElement('tr');
    tr.dataset.seq = seq;
    tr.append(td(seq, 'num'), td(new Date().toLocaleTimeString()));
    for (const c of cells) tr.appendChild(td(c));
    const body = table.tBodies[0];
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_EVENTS) body.deleteRow(-1);
  }

  function togglePause() {
    E.paused = !E.paused;
    $('pause').textContent = E.paused ? 'resume' : 'pause';
    if (E.paused) {
      if (E.es) E.es.close();
      E.es = null;
      $('stream-state').textContent = 'paused';
    } else if (E.name !== null) {
      // from the last record seen: the server sends what came meanwhile, or says what was missed
      openStream(E.name, E.lastId ? Number(E.lastId) : null);
    }
  }

  // ---------------------------------------------------------------- start
  $('percpu').addEventListener('change', (e) => { S.percpu = e.target.checked; renderEntries(); });
  $('all-maps').addEventListener('change', (e) => { S.allMaps = e.target.checked; renderList(); });
  $('paused-map').addEventListener('change', (e) => { S.paused = e.target.checked; });
  $('pause').addEventListener('click', togglePause);
  $('event-filter').addEventListener('input', () => { // the rows shown already, too
    const filter = $('event-filter').value;
    for (const tr of [...$('events').tBodies[0].rows]) {
      if (filter && ![...tr.cells].slice(2).some((c) => c.textContent.includes(filter))) tr.remove();
    }
  });
  $('stream').addEventListener('change', (e) => {
    if (E.paused) togglePause(); // another stream: streaming again, from its next record
    openStream(e.target.value, null);
  });
  async function listLoop() {
    await refreshList();
    setTimeout(listLoop, LIST_EVERY);
  }
  listLoop();
  if (S.ref !== null) choose(S.ref);
  refreshStreams();
})();
