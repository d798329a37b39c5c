"""Checks the live page of the OpenResty example in headless Chromium.

Usage: check_page.py STATE FS PORT NGX_PID SHOTS (run by test_page.sh).
Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe:
commands on fd 3, answers on fd 4, each a JSON text ended by a NUL byte) and
reads the rendered DOM; the oracle for every value is bpftool's JSON dump of
the pinned map. Console messages of level error, uncaught exceptions and
failed loads are collected from the protocol's events, and the page's own
list (#console-errors). Stops nginx (NGX_PID) at the end to see the page say
the server is gone.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import check  # noqa: E402

STATE, FS, PORT, NGX_PID, SHOTS = sys.argv[1:6]
BASE = "http://127.0.0.1:%s" % PORT
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class Browser:
    """headless Chromium and one page, over the DevTools protocol on a pipe"""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="luaebpf-chromium-")
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()

        def fds():  # the child: commands on fd 3, answers on fd 4
            a, b = os.dup(cmd_r), os.dup(res_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(os.path.join(self.dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--user-data-dir=" + self.dir, "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, close_fds=False,
            preexec_fn=fds, start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        self.next_id = 0
        self.answers = {}
        self.events = []
        self.cond = threading.Condition()
        threading.Thread(target=self.reader, daemon=True).start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = [t for t in targets if t["type"] == "page"][0]
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(domain + ".enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                  deviceScaleFactor=1, mobile=False)

    def reader(self):
        buf = b""
        while True:
            chunk = os.read(self.res_r, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                with self.cond:
                    if "id" in m:
                        self.answers[m["id"]] = m
                    else:
                        self.events.append(m)
                    self.cond.notify_all()

    def call(self, method, session=None, timeout=15, **params):
        with self.cond:
            self.next_id += 1
            i = self.next_id
        msg = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        end = time.time() + timeout
        with self.cond:
            while i not in self.answers:
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError(method)
                self.cond.wait(left)
            m = self.answers.pop(i)
        if "error" in m:
            raise RuntimeError("%s: %s" % (method, m["error"]))
        return m.get("result", {})

    def send(self, method, **params):
        return self.call(method, session=self.session, **params)

    def js(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("page: %s" % r["exceptionDetails"].get("text"))
        return r["result"].get("value")

    def goto(self, url):
        self.send("Page.navigate", url=url)
        self.wait("location.href === %s && document.readyState === 'complete'" % json.dumps(url))

    def wait(self, expr, timeout=10):
        """until expr is truthy in the page; its value"""
        end = time.time() + timeout
        while True:
            try:
                v = self.js(expr)
            except RuntimeError:  # a navigation under way destroyed the context: again
                v = None
            if v or time.time() > end:
                return v
            time.sleep(0.1)

    def problems(self):
        """console errors, exceptions and failed loads reported so far"""
        out = []
        with self.cond:
            evs = list(self.events)
        for e in evs:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: %s %s" % (d.get("text"), d.get("exception", {}).get("description", "")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: %s" % " ".join(str(a.get("value", a.get("description")))
                                                         for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append("log: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        return out

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the browser and its children
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the oracle

def dump(name):
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(FS, name)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def le(hexbytes):
    return int.from_bytes(bytes(int(b, 16) for b in hexbytes), "little")


def counts_oracle():
    """counts (no BTF): key -> value, from the raw bytes"""
    return {le(e["key"]): le(e["value"]) for e in dump("counts")}


def hist_oracle(name="lat_hist"):
    """a per-CPU array of counts, from the raw bytes: slot -> [count per CPU]"""
    return {le(e["key"]): [le(v["value"]) for v in e["values"]] for e in dump(name)}


def slots_oracle():
    """proc_lat (BTF, read here from the raw bytes): (pid, comm) -> [slot counts]"""
    out = {}
    for e in dump("proc_lat"):
        k = bytes(int(b, 16) for b in e["key"])
        v = bytes(int(b, 16) for b in e["value"])
        pid = int.from_bytes(k[0:4], "little")
        comm = k[4:16].split(b"\0")[0].decode()
        out[(pid, comm)] = [int.from_bytes(v[8 * i:8 * i + 8], "little") for i in range(20)]
    return out


def log2_label(i):
    lo = 0 if i == 0 else 2 ** i
    return "%d -> %d" % (lo, 2 ** (i + 1) - 1)


ROWS = """JSON.stringify([...document.querySelectorAll('#entries tbody tr[data-key]')].map(tr =>
  ({key: tr.dataset.key, value: (tr.querySelector('.value') || {}).textContent,
    rate: (tr.querySelector('.rate') || {}).textContent,
    cpus: [...tr.querySelectorAll('.cpu')].map(c => c.textContent)})))"""
BARS = """JSON.stringify([...document.querySelectorAll('#hist svg.hist')].map(svg => ({
  title: svg.dataset.title || null,
  labels: [...svg.querySelectorAll('text.label')].map(t => t.textContent),
  bars: [...svg.querySelectorAll('rect.bar')].map(r => ({count: r.dataset.count, width: +r.getAttribute('width')}))})))"""


def rows(b):
    return {r["key"]: r for r in json.loads(b.js(ROWS) or "[]")}


def main():
    # stopped from outside (test_page.sh interrupted): close the browser on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    b = Browser()
    try:
        run(b)
    finally:
        b.close()


def run(b):
    # ------------------------------------------------------------ the table
    b.goto(BASE + "/?map=counts")
    want = counts_oracle()

    def table_matches():
        got = b.wait("document.querySelectorAll('#entries tbody tr[data-key]').length >= %d" % len(want))
        if not got:
            return "the table never showed %d rows: %s" % (len(want), b.js("document.body.innerText")[:300])
        r = rows(b)
        exp = {str(k): str(v) for k, v in want.items()}
        have = {k: v["value"] for k, v in r.items()}
        if have != exp:
            return "table %s, bpftool %s" % (have, exp)
    check("GET /?map=counts: the table shows the map's entries as bpftool dumps them (2^64-1 exact)",
          table_matches)

    def list_shows():
        names = b.wait("""(() => { const t = [...document.querySelectorAll('#maps tbody tr')].map(r => r.textContent);
          return t.length >= 4 ? JSON.stringify(t) : null })()""")
        if not names:
            return "the map list has fewer than 4 rows"
        t = json.loads(names)
        for n in ("lx_counts", "shapes", "percpu_inner", "lx_pg_lat_hist"):
            if not any(n in x for x in t):
                return "%s is not in the map list %s" % (n, t)
        if not any("lx_pg_lat_hist" in x and "log2 hist" in x for x in t):
            return "lat_hist is not marked as a log2 histogram in the list"
    check("the map list shows the served maps, the histogram marked", list_shows)

    def rates_zero():
        # two reads of a map that does not change: every rate is 0/s
        got = b.wait("""[...document.querySelectorAll('#entries tbody tr[data-key] .rate')].every(
          c => c.textContent === '0/s') && document.querySelectorAll('#entries tbody tr[data-key]').length > 0""",
                     timeout=5)
        if not got:
            return "rates: %s" % {k: v["rate"] for k, v in rows(b).items()}
    check("after two reads of an unchanged map every rate reads 0/s", rates_zero)

    def sorts():
        b.js("document.querySelector('#entries th[data-col=value]').click()")  # value, descending
        order = [r["key"] for r in json.loads(b.js(ROWS))]
        exp = [str(k) for k, _ in sorted(want.items(), key=lambda kv: -kv[1])]
        if order != exp:
            return "sorted by value (descending): %s, expected %s" % (order, exp)
        b.js("document.querySelector('#entries th[data-col=key]').click()")
        order = [r["key"] for r in json.loads(b.js(ROWS))]
        if order != sorted(order, key=int):
            return "sorted by key: %s" % order
    check("a click on a column header sorts the table by it", sorts)

    def one_read_at_a_time():
        # reads of the map slowed to 2.5 s each (the page's fetch, wrapped):
        # over 6 s, never more than one of them under way
        b.js("""(() => { const f = window.fetch; window.__origFetch = f;
          window.__inflight = 0; window.__maxInflight = 0; window.__reads = 0;
          window.fetch = async (u, o) => {
            if (!String(u).startsWith('/maps/')) return f(u, o);
            window.__reads++; window.__inflight++;
            window.__maxInflight = Math.max(window.__maxInflight, window.__inflight);
            try { await new Promise((r) => setTimeout(r, 2500)); return await f(u, o); }
            finally { window.__inflight--; } };
          return true })()""")
        time.sleep(6)
        got = json.loads(b.js("JSON.stringify([window.__maxInflight, window.__reads])"))
        b.js("window.fetch = window.__origFetch; true")
        if got[1] < 2:
            return "only %d reads in 6 s" % got[1]
        if got[0] != 1:
            return "%d reads of the map under way at once (of %d)" % tuple(got)
    check("a map slower to read than the refresh period is read once at a time, not piled up",
          one_read_at_a_time)

    # ------------------------------------------------------------ live updates
    subprocess.run(["luajit", os.path.join(ROOT, "examples/openresty/page_fixture.lua"), FS, "bump"],
                   check=True)
    want = counts_oracle()

    def updates():
        v = b.wait("(() => { const c = document.querySelector('#entries tr[data-key=\"1\"] .value');"
                   " return c && c.textContent === '%d' })()" % want[1], timeout=5)
        if not v:
            return "key 1 still reads %s, bpftool %d" % (rows(b).get("1"), want[1])
        r = rows(b)["1"]["rate"]
        if not r.startswith("+"):
            return "key 1's rate after +1000 reads %r" % r
    check("without a reload, the table shows counts[1] + 1000 within 5 s, with a positive rate", updates)

    # ------------------------------------------------------------ a histogram
    b.js("document.querySelector('#maps tbody tr[data-id=\"%s\"]').click()"
         % json.loads(b.js("JSON.stringify([...document.querySelectorAll('#maps tbody tr')]"
                           ".filter(r => r.textContent.includes('lx_pg_lat_hist'))[0].dataset.id)")))
    slots = hist_oracle()
    last = max(i for i, v in slots.items() if sum(v) > 0)

    def hist_renders():
        got = b.wait("document.querySelectorAll('#hist rect.bar').length === %d" % (last + 1))
        h = json.loads(b.js(BARS))
        if not got or len(h) != 1:
            return "%d histograms, bars %s (want %d bars)" % (len(h), h and len(h[0]["bars"]), last + 1)
        labels = [log2_label(i) for i in range(last + 1)]
        if h[0]["labels"] != labels:
            return "labels %s, want %s" % (h[0]["labels"], labels)
        counts = [str(sum(slots[i])) for i in range(last + 1)]
        if [x["count"] for x in h[0]["bars"]] != counts:
            return "bar counts %s, bpftool's sums %s" % ([x["count"] for x in h[0]["bars"]], counts)
        widths = [x["width"] for x in h[0]["bars"]]
        big = max(range(last + 1), key=lambda i: sum(slots[i]))
        if widths[big] != max(widths) or any(w <= 0 for i, w in enumerate(widths) if sum(slots[i]) > 0):
            return "bar widths %s do not follow the counts" % widths
        if "256 -> 511" not in h[0]["labels"]:
            return "no bucket labelled 256 -> 511"
    check("lat_hist (per-CPU array named *hist) draws as a log2 histogram: labels like '256 -> 511', "
          "one bar per slot up to the last used, counts summed over CPUs as bpftool dumps them", hist_renders)

    def percpu_table():
        got = b.wait("document.querySelectorAll('#entries tbody tr[data-key]').length === %d" % len(slots))
        r = rows(b)
        if not got:
            return "%d rows, bpftool %d" % (len(r), len(slots))
        for k, per in slots.items():
            if r[str(k)]["value"] != str(sum(per)):
                return "slot %d: %s, bpftool's per-CPU sum %d" % (k, r[str(k)]["value"], sum(per))
        b.js("document.getElementById('percpu').click()")
        r = rows(b)
        for k, per in slots.items():
            if r[str(k)]["cpus"] != [str(x) for x in per]:
                return "slot %d per CPU: %s, bpftool %s" % (k, r[str(k)]["cpus"], per)
        b.js("document.getElementById('percpu').click()")
    check("a per-CPU map's table shows each entry summed over CPUs, and each CPU's value with "
          "the toggle", percpu_table)

    def hist_live():
        before = b.js("document.querySelectorAll('#hist rect.bar').length")
        subprocess.run(["luajit", os.path.join(ROOT, "examples/openresty/page_fixture.lua"), FS, "hist"],
                       check=True)
        s = hist_oracle()
        n = max(i for i, v in s.items() if sum(v) > 0) + 1
        if n <= before:
            return "the fixture added no slot (%d bars before, %d slots used)" % (before, n)
        counts = [str(sum(s[i])) for i in range(n)]
        got = b.wait("JSON.stringify([...document.querySelectorAll('#hist rect.bar')].map(r => r.dataset.count))"
                     " === %s" % json.dumps(json.dumps(counts, separators=(",", ":"))), timeout=5)
        if not got:
            return "bars %s, bpftool %s" % (b.js(BARS), counts)
    check("the histogram follows the map live (a new slot, a grown slot) within 5 s", hist_live)

    def slots_hists():
        b.goto(BASE + "/?map=proc_lat")
        want = slots_oracle()
        if not b.wait("document.querySelectorAll('#hist svg.hist').length === %d" % len(want)):
            return "%d histograms drawn, bpftool has %d entries: %s" % (
                b.js("document.querySelectorAll('#hist svg.hist').length"), len(want),
                b.js("document.getElementById('map-error').textContent"))
        got = {h["title"]: h for h in json.loads(b.js(BARS))}
        for (pid, comm), slots in want.items():
            title = "comm=%s, pid=%d" % (comm, pid)
            h = got.get(title) or got.get("pid=%d, comm=%s" % (pid, comm))
            if not h:
                return "no histogram titled %r among %s" % (title, list(got))
            last = max(i for i, c in enumerate(slots) if c > 0)
            if h["labels"] != [log2_label(i) for i in range(last + 1)]:
                return "%s: labels %s" % (title, h["labels"])
            if [x["count"] for x in h["bars"]] != [str(c) for c in slots[:last + 1]]:
                return "%s: bars %s, bpftool %s" % (title, [x["count"] for x in h["bars"]], slots[:last + 1])
    check("proc_lat (a value struct holding slots) draws one log2 histogram per entry, titled by "
          "its key, with bpftool's counts", slots_hists)

    def markup_as_text():
        # proc_lat's key comm="<img src=x>": shown as those characters, never made an element
        if not b.wait("[...document.querySelectorAll('#entries tbody tr[data-key]')].some("
                      "tr => tr.dataset.key.includes('<img src=x>'))"):
            return "no table row shows the key <img src=x>: %s" % list(rows(b))
        titles = [h["title"] for h in json.loads(b.js(BARS))]
        if not any("comm=<img src=x>" in (t or "") for t in titles):
            return "no histogram titled with comm=<img src=x>: %s" % titles
        n = b.js("document.querySelectorAll('img').length")
        if n != 0:
            return "%d img elements in the page" % n
    check("a key holding markup (<img src=x>) shows as text in the table and a histogram's title, "
          "no element made of it", markup_as_text)

    def marked():
        # fixture.lua's lat (hist.bpf.o's `latency`): a histogram only because the list says hist=log2
        views = json.loads(b.js("fetch('/page/views').then(r => r.text())"))
        by = {os.path.basename(v["path"] or ""): v["hist"] for v in views["maps"]}
        if by.get("lat") != {"scale": "log2", "by": "list"}:
            return "lat: %s" % by.get("lat")
        if by.get("counts") is not None:
            return "counts is taken for a histogram: %s" % by.get("counts")
        b.goto(BASE + "/?map=lat")
        slots = hist_oracle("lat")
        last = max(i for i, v in slots.items() if sum(v) > 0)
        counts = [str(sum(slots[i])) for i in range(last + 1)]
        got = b.wait("JSON.stringify([...document.querySelectorAll('#hist rect.bar')].map(r => r.dataset.count))"
                     " === %s" % json.dumps(json.dumps(counts, separators=(",", ":"))))
        if not got:
            return "bars %s, bpftool %s" % (b.js(BARS), counts)
        labels = json.loads(b.js(BARS))[0]["labels"]
        if labels != [log2_label(i) for i in range(last + 1)]:
            return "labels %s" % labels
    check("a map the served list marks hist=log2 (lat) draws as one, with bpftool's per-CPU sums; "
          "an unmarked counts map does not", marked)

    # ------------------------------------------------------------ events
    tag = "lxpg%d" % os.getpid()
    exe = os.path.join(STATE, "exec")
    os.makedirs(exe, exist_ok=True)
    os.chmod(STATE, 0o755)

    def run_prog(name):
        path = os.path.join(exe, name)
        shutil.copy("/bin/true", path)
        subprocess.run([path], check=True)

    def tail_shows(name, timeout=8):
        return b.wait("document.getElementById('events').tBodies[0].textContent.includes(%s)" % json.dumps(name),
                      timeout=timeout)

    def tail():
        if not b.wait("document.getElementById('stream-state').textContent.startsWith('streaming')"):
            return "the tail did not start: %s" % b.js("document.getElementById('stream-state').textContent")
        # only this test's programs: the machine's other execs would push them out of the tail
        b.js("(() => { const f = document.getElementById('event-filter'); f.value = %s;"
             " f.dispatchEvent(new Event('input')) })()" % json.dumps(tag))
        run_prog(tag + "_a")
        if not tail_shows(tag + "_a"):
            return "the exec of %s_a never showed in the tail" % tag
        if b.js("document.getElementById('missed').textContent") != "0":
            return "missed reads %s" % b.js("document.getElementById('missed').textContent")
    check("the event tail (GET /events/events) shows an exec as it happens", tail)

    def pause():
        b.js("document.getElementById('pause').click()")
        run_prog(tag + "_b")
        if tail_shows(tag + "_b", timeout=1.5):
            return "a paused tail showed a new event"
        b.js("document.getElementById('pause').click()")
        if not tail_shows(tag + "_b"):
            return "after resume, the event that came while paused never showed"
    check("pause stops the tail; resume shows what came meanwhile", pause)

    # the page as the README shows it
    b.js("document.querySelector('#maps tbody tr[data-id=\"%s\"]').click()"
         % json.loads(b.js("JSON.stringify([...document.querySelectorAll('#maps tbody tr')]"
                           ".filter(r => r.textContent.includes('lx_pg_lat_hist'))[0].dataset.id)")))
    time.sleep(1.2)
    shot = os.path.join(SHOTS, "live-page.png")

    def screenshot():
        b.screenshot(shot)
        with open(shot, "rb") as f:
            head = f.read(8)
        if head != b"\x89PNG\r\n\x1a\n":
            return "not a PNG"
    check("screenshot saved (%s)" % shot, screenshot)

    def no_errors():
        p = b.problems() + [x for x in (b.js("document.getElementById('console-errors').textContent") or "")
                            .split("\n") if x]
        shown = b.js("document.getElementById('errors').textContent + document.getElementById('map-error')"
                     ".textContent + document.getElementById('events-error').textContent")
        if p:
            return "; ".join(p)
        if shown:
            return "the page shows errors: %s" % shown
    check("no console error, exception or failed load, and no error shown, so far", no_errors)

    # ------------------------------------------------------------ errors shown
    hidden = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "pinned",
                                        os.path.join(FS, "private/hidden")],
                                       capture_output=True, text=True, check=True).stdout)["id"]

    def forbidden():
        b.goto(BASE + "/?map=%d" % hidden)
        t = b.wait("document.getElementById('map-error').textContent")
        if not t or "403" not in t or "forbidden" not in t:
            return "map-error reads %r" % t
    check("a map the workers (nobody) may not open: the page shows the 403 and its reason", forbidden)

    def missing():
        b.goto(BASE + "/?map=no_such_map_lx")
        t = b.wait("document.getElementById('map-error').textContent")
        if not t or "404" not in t:
            return "map-error reads %r" % t
    check("a map that does not exist: the page shows the 404", missing)

    def exceptions():
        p = [x for x in b.problems() if not x.startswith("log: Failed to load resource")]
        p += [x for x in (b.js("document.getElementById('console-errors').textContent") or "").split("\n") if x]
        if p:
            return "; ".join(p)
    check("the error answers raised no exception in the page", exceptions)

    def server_gone():
        b.goto(BASE + "/?map=counts")
        if not b.wait("document.querySelectorAll('#entries tbody tr[data-key]').length > 0"):
            return "the page did not load again"
        os.kill(int(NGX_PID), signal.SIGTERM)
        t = b.wait("""(() => { const s = document.getElementById('status').textContent;
          const e = document.getElementById('errors').textContent;
          return s.includes('unreachable') && e.includes('does not answer') ? s + ' | ' + e : '' })()""",
                   timeout=8)
        if not t:
            return "status %r, errors %r" % (b.js("document.getElementById('status').textContent"),
                                             b.js("document.getElementById('errors').textContent"))
        if b.js("document.querySelectorAll('#entries tbody tr[data-key]').length") == 0:
            return "the last entries read vanished from the table"
    check("nginx stopped: the page says the server does not answer and keeps the last entries",
          server_gone)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the browser did not start or answer: one failed check, not a traceback
        why = "%s: %s" % (type(e).__name__, e)
        check("headless Chromium drives the page", lambda: why)
