"""examples/openresty/check.py STATE BPFFS: the content checks of test.sh.

test.sh has fetched every endpoint with curl into STATE/<name>.{code,head,body};
this compares the bodies with what the kernel holds, as bpftool (the
independent oracle) dumps it, parses /metrics with prometheus_client's parser,
and prints one line per check: "ok - ..." or "not ok - ...: why".
Run by /usr/bin/python3 (Debian's python3-prometheus-client).
"""
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
    # maps whose values are not numbers are left out (queue: no keys)
    if any(n.startswith("ebpf_map_queue") for n in fams):
        return "the queue was exported"


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
check("GET /maps/big: every entry once, read in several read_batch slices", check_big("big"))
check("GET /maps/lx_big: served maps are found by kernel name too", check_big("big_name"))
check("GET /metrics parses with prometheus_client and matches the maps", check_metrics)
check("GET /maps/no_such_map_lx is 404", status("nosuch", 404))
check("GET /maps/4294967295 (no such id) is 404", status("noid", 404))
check("GET /maps/<id of an unserved map> is 403 (workers may not open by id)",
      status("hidden_id", 403, "CAP_SYS_ADMIN"))
check("GET /maps/lx_hidden (unserved, by name) is 403", status("hidden_name", 403, "EPERM"))
check("GET /maps/queue (cannot be walked) is 500 with a one-line reason",
      status("queue", 500, "luaebpf:"))
