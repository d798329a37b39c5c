"""examples/openresty/check.py STATE BPFFS: the content checks of test.sh.

test.sh has fetched every endpoint with curl into STATE/<name>.{code,head,body};
this compares the bodies with what the kernel holds, as bpftool (the
independent oracle) dumps it, parses /metrics with prometheus_client's parser
and has promtool check it, compares the histogram families and a real
Prometheus' histogram_quantile answers (STATE/prom_*.json) with the buckets
bpftool's dumps of the histogram maps give, and prints one line per check:
"ok - ..." or "not ok - ...: why".
Run by /usr/bin/python3 (Debian's python3-prometheus-client).
"""
import ipaddress
import json
import os
import subprocess
import sys

from checklib import check

from prometheus_client.parser import text_string_to_metric_families

STATE, FS = sys.argv[1], sys.argv[2]


def fetched(name):
    code = int(open(os.path.join(STATE, name + ".code")).read().strip() or 0)
    head = open(os.path.join(STATE, name + ".head"), encoding="latin-1").read()
    body = open(os.path.join(STATE, name + ".body"), "rb").read().decode("utf-8")
    headers = {}
    for line in head.splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return code, headers, body


def bpftool(*args):
    return json.loads(subprocess.check_output(["bpftool", "-j"] + list(args)))


def show(path):
    return bpftool("map", "show", "pinned", os.path.join(FS, path))


def dump(path):
    return bpftool("map", "dump", "pinned", os.path.join(FS, path))


def le(hexlist):
    return int.from_bytes(bytes(int(h, 16) for h in hexlist), "little")


def cstr(hexlist):
    b = bytes(int(h, 16) for h in hexlist)
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def json_ok(name):
    code, headers, body = fetched(name)
    if code != 200:
        raise AssertionError("status %d: %s" % (code, body.strip()))
    if not headers.get("content-type", "").startswith("application/json"):
        raise AssertionError("content-type %r" % headers.get("content-type"))
    return json.loads(body)


def as_int(v):
    """a JSON number, or the decimal string of a u64 beyond 2^53"""
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    return v


# ------------------------------------------------------------------ /maps

def check_list():
    listed = json_ok("maps")
    by_id = {m["id"]: m for m in listed}
    for path in ("counts", "shapes", "percpu_inner", "big", "queue", "private/hidden"):
        want = show(path)
        got = by_id.get(want["id"])
        if got is None:
            return "map %s (id %d) not listed" % (path, want["id"])
        for k_ours, k_tool in (("name", "name"), ("type", "type"), ("key_size", "bytes_key"),
                               ("value_size", "bytes_value"), ("max_entries", "max_entries")):
            if got[k_ours] != want[k_tool]:
                return "map %s: %s is %r, bpftool says %r" % (path, k_ours, got[k_ours], want[k_tool])
        if got["served"] != (path != "private/hidden"):
            return "map %s: served is %r" % (path, got["served"])
        if not isinstance(got["flags"], list):
            return "flags is not a JSON array: %r" % (got["flags"],)


def check_list_source():
    code, headers, _ = fetched("maps")
    src = headers.get("x-luaebpf-source")
    # workers run as nobody: they may not list maps, so the list is the master's
    if src != "startup":
        return "X-Luaebpf-Source is %r, expected 'startup' (unprivileged workers)" % src


# ------------------------------------------------------------------ /maps/<x>

def entries_of(name):
    doc = json_ok(name)
    if doc["count"] != len(doc["entries"]):
        raise AssertionError("count %d but %d entries" % (doc["count"], len(doc["entries"])))
    return doc


def check_counts(name):
    def run():
        doc = entries_of(name)
        want = {le(e["key"]): le(e["value"]) for e in dump("counts")}
        got = {e["key"]: as_int(e["value"]) for e in doc["entries"]}
        if got != want:
            return "entries %r, bpftool has %r" % (got, want)
        # beyond 2^53 the value is a decimal string, within it a number
        raw = {e["key"]: e["value"] for e in doc["entries"]}
        if raw[3] != "18446744073709551615" or raw[2] != "9007199254740993" or raw[1] != 5:
            return "u64 encoding: %r" % raw
        if doc["map"]["id"] != show("counts")["id"]:
            return "map.id %r" % doc["map"]["id"]
    return run


def check_shapes():
    doc = entries_of("shapes")
    want = {}
    for e in dump("shapes"):
        k = (le(e["key"][0:4]), cstr(e["key"][4:12]))  # bpftool mis-escapes '\' in comm
        want[k] = e["formatted"]["value"]
    got = {(e["key"]["pid"], e["key"]["comm"]): e["value"] for e in doc["entries"]}
    if set(got) != set(want):
        return "keys %r, bpftool has %r" % (sorted(got), sorted(want))
    for k, wv in want.items():
        gv = got[k]
        for f in ("u8v", "s16v", "s32v", "u64v", "s64v", "flag", "name", "list", "color", "cv"):
            if as_int(gv.get(f)) != wv[f]:
                return "key %r field %s: %r, bpftool has %r" % (k, f, gv.get(f), wv[f])
        for f in ("port", "delta", "bytes"):
            if as_int(gv["in"][f]) != wv["in"][f]:
                return "key %r field in.%s: %r, bpftool has %r" % (k, f, gv["in"][f], wv["in"][f])
        if gv.get("anon_a") != wv[""]["anon_a"]:
            return "anonymous member fields are not in the parent object: %r" % gv
    if ('q"b\\s' not in [k[1] for k in got]):
        return "comm with a quote and a backslash did not round-trip"


def conns_oracle():
    """bpftool's dump of conns: {(laddr, raddr, port, dir): count}, addresses
    turned into text by Python's ipaddress from the key's bytes"""
    want = {}
    for e in dump("conns"):
        k = bytes(int(h, 16) for h in e["key"])
        want[(str(ipaddress.IPv4Address(k[0:4])), str(ipaddress.IPv4Address(k[4:8])),
              int.from_bytes(k[8:10], "little"), k[10])] = le(e["value"])
    return want


def check_conns():
    doc = entries_of("conns")
    got = {(e["key"]["laddr"], e["key"]["raddr"], e["key"]["port"], e["key"]["dir"]): e["value"]
           for e in doc["entries"]}
    want = conns_oracle()
    if got != want:
        return "entries %r, bpftool has %r" % (got, want)


def check_percpu():
    doc = entries_of("percpu_inner")
    want = {}
    for e in dump("percpu_inner"):
        want[le(e["key"])] = [v["value"] for v in e["formatted"]["values"]]
    got = {as_int(e["key"]): e["value"] for e in doc["entries"]}
    if set(got) != set(want):
        return "keys %r, bpftool has %r" % (sorted(got), sorted(want))
    for k, per in want.items():
        if len(got[k]) != len(per):
            return "key %d: %d per-CPU values, bpftool has %d" % (k, len(got[k]), len(per))
        for c, wv in enumerate(per):
            gv = got[k][c]
            if (gv["port"], gv["delta"], as_int(gv["bytes"])) != (wv["port"], wv["delta"], wv["bytes"]):
                return "key %d cpu %d: %r, bpftool has %r" % (k, c, gv, wv)


def check_big(name):
    def run():
        doc = entries_of(name)
        want = {le(e["key"]): le(e["value"]) for e in dump("big")}
        got = {}
        for e in doc["entries"]:
            if e["key"] in got:
                return "key %d twice" % e["key"]
            got[e["key"]] = e["value"]
        if got != want:
            return "%d entries, bpftool has %d (or values differ)" % (len(got), len(want))
    return run


# ------------------------------------------------------------------ /metrics

def check_metrics():
    code, headers, body = fetched("metrics")
    if code != 200:
        return "status %d: %s" % (code, body.strip())
    if not headers.get("content-type", "").startswith("text/plain; version=0.0.4"):
        return "content-type %r" % headers.get("content-type")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    # counts: one sample per key, label "key", exact u64 text
    c = fams.get("ebpf_map_lx_counts")
    if c is None or c.type != "gauge" or not c.documentation:
        return "family ebpf_map_lx_counts missing or without TYPE/HELP: %r" % sorted(fams)
    want = {str(le(e["key"])): le(e["value"]) for e in dump("counts")}
    got = {s.labels["key"]: s.value for s in c.samples}
    if set(got) != set(want) or any(got[k] != float(v) for k, v in want.items()):
        return "ebpf_map_lx_counts %r, bpftool has %r" % (got, want)
    for line in ('ebpf_map_lx_counts{key="3"} 18446744073709551615',
                 'ebpf_map_lx_counts{key="2"} 9007199254740993'):
        if line not in body.splitlines():
            return "no exact line %r" % line
    # percpu_inner: per-CPU values summed, one family per numeric field
    b = fams.get("ebpf_map_percpu_inner_bytes")
    if b is None:
        return "family ebpf_map_percpu_inner_bytes missing"
    want = {str(le(e["key"])): sum(v["value"]["bytes"] for v in e["formatted"]["values"])
            for e in dump("percpu_inner")}
    got = {s.labels["key"]: s.value for s in b.samples}
    if got != {k: float(v) for k, v in want.items()}:
        return "ebpf_map_percpu_inner_bytes %r, summed bpftool values %r" % (got, want)
    for k, v in want.items():
        if 'ebpf_map_percpu_inner_bytes{key="%s"} %d' % (k, v) not in body.splitlines():
            return "per-CPU sum for key %s is not the exact integer %d" % (k, v)
    # shapes: a struct key gives one label per field; escaping round-trips
    s = fams.get("ebpf_map_shapes_u64v")
    if s is None:
        return "family ebpf_map_shapes_u64v missing"
    got = {(x.labels.get("pid"), x.labels.get("comm")): x.value for x in s.samples}
    if got.get(("1", 'q"b\\s')) != 18446744073709551615.0 or got.get(("4242", "nginx")) != 7.0:
        return "ebpf_map_shapes_u64v samples %r" % got
    if 'comm="q\\"b\\\\s"' not in body:
        return "label value not escaped as the format says"
    # conns: decoded key fields are labels with the addresses as text
    c = fams.get("ebpf_map_conns4")
    if c is None:
        return "family ebpf_map_conns4 missing"
    got = {(x.labels.get("laddr"), x.labels.get("raddr"), int(x.labels.get("port")),
            int(x.labels.get("dir"))): x.value for x in c.samples}
    if got != {k: float(v) for k, v in conns_oracle().items()}:
        return "ebpf_map_conns4 samples %r, bpftool has %r" % (got, conns_oracle())
    # maps whose values are not numbers are left out (queue: no keys)
    if any(n.startswith("ebpf_map_queue") for n in fams):
        return "the queue was exported"


# ------------------------------------------------------------------ histograms

def slot_counts(path):
    """{slot: count} of a log2 histogram map as bpftool dumps it: an array
    keyed by a u32 slot, per-CPU u64 values summed"""
    out = {}
    for e in dump(path):
        if "values" in e:
            out[le(e["key"])] = sum(le(v["value"]) for v in e["values"])
        else:
            out[le(e["key"])] = le(e["value"])
    return out


def top_of(slot):
    """the largest value whose floor(log2) is `slot` (hist.bpf.c's log2l),
    found with Python's own bit_length; slot 0 holds 0 and 1"""
    v = 1
    while (v + 1).bit_length() - 1 <= slot:
        v = v * 2 + 1
    return v


def histogram_family(fams, name, path):
    """checks family `name` against the map at `path`; returns its counts"""
    f = fams.get(name)
    if f is None or f.type != "histogram":
        raise AssertionError("family %s missing or not a histogram: %r" % (name, f and f.type))
    counts = slot_counts(path)
    total = sum(counts.values())
    buckets = [s for s in f.samples if s.name == name + "_bucket"]
    les = [s.labels["le"] for s in buckets]
    want_les = [str(top_of(slot)) for slot in range(len(counts))] + ["+Inf"]
    if les != want_les:
        raise AssertionError("le %r, expected %r" % (les, want_les))
    cum = 0
    for slot, s in enumerate(buckets[:-1]):
        cum += counts.get(slot, 0)
        if s.value != cum:
            raise AssertionError("bucket le=%s is %r, cumulative bpftool count %d" % (les[slot], s.value, cum))
    if buckets[-1].value != total:
        raise AssertionError("+Inf bucket %r, bpftool total %d" % (buckets[-1].value, total))
    count = [s.value for s in f.samples if s.name == name + "_count"]
    if count != [total]:
        raise AssertionError("_count %r, expected %d" % (count, total))
    if any(s.name == name + "_sum" for s in f.samples):
        raise AssertionError("a _sum, but the map holds no sum")
    return counts


def check_histograms():
    code, headers, body = fetched("metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    # marked hist=log2 in the served list (its name says nothing)
    histogram_family(fams, "ebpf_map_latency", "lat")
    # a histogram by the rule: an array of counts named *hist
    histogram_family(fams, "ebpf_map_lx_io_hist", "io_hist")


HIST_FAMILIES = ("ebpf_map_latency", "ebpf_map_lx_io_hist", "ebpf_map_lx_edge_hist")


def check_promtool():
    """promtool parses the whole of /metrics; it lints names too (exit 1), so
    the only complaints allowed are naming lints about the fixture's other
    families (shapes has a field anon_b: "abbreviated units"); the histogram
    families, cut out of the body as served, pass without one"""
    code, headers, body = fetched("metrics")
    p = subprocess.run(["promtool", "check", "metrics"], input=body.encode(), capture_output=True)
    for line in (p.stdout + p.stderr).decode().splitlines():
        name = line.split(" ", 1)[0]
        if name in HIST_FAMILIES or not (" metric names should " in line or " should have " in line):
            return "promtool: %s" % line
    lines, keep = [], False
    for line in body.splitlines():
        if line.startswith("# HELP "):
            keep = line.split(" ")[2] in HIST_FAMILIES
        if keep:
            lines.append(line)
    if len([l for l in lines if l.startswith("# TYPE ")]) != len(HIST_FAMILIES):
        return "the histogram families are not all in /metrics"
    p = subprocess.run(["promtool", "check", "metrics"], input=("\n".join(lines) + "\n").encode(),
                       capture_output=True)
    if p.returncode != 0:
        return "promtool refused the histogram families: %s" % (p.stdout + p.stderr).decode()


def api_value(name):
    doc = json.load(open(os.path.join(STATE, name + ".json")))
    if doc.get("status") != "success":
        raise AssertionError("%s: %r" % (name, doc))
    result = doc["data"]["result"]
    if len(result) != 1:
        raise AssertionError("%s: %d series, expected 1: %r" % (name, len(result), result))
    return float(result[0]["value"][1])


def quantile_check(name, q, path):
    """Prometheus' answer lies in the bucket where the q-th value of the
    map's counts falls: above the previous bucket's top, at most its own"""
    def run():
        counts = slot_counts(path)
        total = sum(counts.values())
        rank, cum = q * total, 0
        for slot in range(len(counts)):
            cum += counts.get(slot, 0)
            if cum >= rank:
                break
        lo = top_of(slot - 1) if slot > 0 else 0
        hi = top_of(slot)
        got = api_value(name)
        if not (lo < got <= hi):
            return "histogram_quantile(%g) = %r, outside slot %d's bucket (%d, %d] from bpftool's counts" % (
                q, got, slot, lo, hi)
        print("# histogram_quantile(%g) over %s = %.1f, in slot %d: (%d, %d]" % (q, path, got, slot, lo, hi))
    return run


def check_prom_count():
    total = sum(slot_counts("lat").values())
    got = api_value("prom_count")
    if got != total:
        return "ebpf_map_latency_count is %r in Prometheus, bpftool's total %d" % (got, total)
    if api_value("prom_up") != 1:
        return "up is not 1"


def check_edge_hist():
    """lx_edge_hist holds 2^53 + 1 in slot 1: no double holds it, so GET
    /page/hist gives it as a decimal string and /metrics writes it exactly,
    as Python's integers read bpftool's bytes"""
    counts = slot_counts("edge_hist")
    code, headers, body = fetched("edge_hist")
    if code != 200:
        return "GET /page/hist/lx_edge_hist: status %d: %s" % (code, body.strip())
    doc = json.loads(body)
    got = [b["count"] for b in doc["histograms"][0]["buckets"]]
    want = [counts.get(slot, 0) for slot in range(len(counts))]
    exact = [str(c) if c > 2 ** 53 - 1 else c for c in want]
    if got != exact:
        return "buckets %r, bpftool %r (past 2^53 as decimal strings)" % (got, exact)
    total = sum(want)
    if doc["histograms"][0]["count"] != str(total):
        return "count %r, bpftool's total %d" % (doc["histograms"][0]["count"], total)
    code, headers, metrics = fetched("metrics")
    cum = 0
    for slot in range(len(counts)):
        cum += counts.get(slot, 0)
        line = 'ebpf_map_lx_edge_hist_bucket{le="%d"} %d\n' % (top_of(slot), cum)
        if line not in metrics:
            return "/metrics has no line %r" % line
    if ("ebpf_map_lx_edge_hist_count %d\n" % total) not in metrics:
        return "/metrics: no _count %d" % total


# ------------------------------------------------------------------ errors

def status(name, want, needle=None):
    def run():
        code, headers, body = fetched(name)
        if code != want:
            return "status %d, expected %d: %s" % (code, want, body.strip())
        lines = body.strip().splitlines()
        if len(lines) != 1:
            return "reason is not one line: %r" % body
        if needle and needle not in body:
            return "reason %r does not say %r" % (body.strip(), needle)
    return run


check("GET /maps lists the maps of the machine, each as bpftool shows it", check_list)
check("GET /maps comes from the master's startup snapshot (workers run as nobody)", check_list_source)
check("GET /maps/counts: u32 -> u64 entries equal bpftool's dump, exact u64", check_counts("counts"))
check("GET /maps/<id> serves the same map by id", check_counts("counts_id"))
check("GET /maps/shapes: BTF struct keys and values equal bpftool's dump", check_shapes)
check("GET /maps/percpu_inner: one value per CPU, equal to bpftool's dump", check_percpu)
check("GET /maps/conns: decode=laddr:ipv4+raddr:ipv4 gives addresses as text, as bpftool's bytes say",
      check_conns)
check("GET /maps/big: every entry once, read in several read_batch slices", check_big("big"))
check("GET /maps/lx_big: served maps are found by kernel name too", check_big("big_name"))
check("GET /metrics parses with prometheus_client and matches the maps", check_metrics)
check("GET /metrics: histogram families (hist=log2 marked, *hist by name) equal bpftool's buckets",
      check_histograms)
check("GET /metrics: promtool check metrics parses it and accepts its histogram families",
      check_promtool)
check("Prometheus scraped the latency histogram: _count equals bpftool's total", check_prom_count)
check("Prometheus: histogram_quantile(0.99) of the latency lands in the bucket bpftool's counts give",
      quantile_check("prom_p99", 0.99, "lat"))
check("Prometheus: histogram_quantile(0.5) of lx_io_hist lands in the bucket bpftool's counts give",
      quantile_check("prom_io_p50", 0.5, "io_hist"))
check("a count of 2^53 + 1 (lx_edge_hist) is exact in GET /page/hist and /metrics, as bpftool reads it",
      check_edge_hist)
check("GET /maps/no_such_map_lx is 404", status("nosuch", 404))
check("GET /maps/4294967295 (no such id) is 404", status("noid", 404))
check("GET /maps/<id of an unserved map> is 403 (workers may not open by id)",
      status("hidden_id", 403, "CAP_SYS_ADMIN"))
check("GET /maps/lx_hidden (unserved, by name) is 403", status("hidden_name", 403, "EPERM"))
check("GET /maps/queue (cannot be walked) is 500 with a one-line reason",
      status("queue", 500, "luaebpf:"))
