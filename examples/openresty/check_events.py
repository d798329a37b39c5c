"""examples/openresty/check_events.py STATE KEEP NCLIENTS: the checks of GET /events/<map>.

test.sh streamed /events/events (execsnoop's ring buffer) to NCLIENTS curl
clients at once (STATE/client<i>.sse, .head) while it ran the programs listed
in STATE/launch.out ("path pid ppid uid" per line, in the order they ran);
then it read the stream from the start with a late client (STATE/late.sse,
since=0, after more than KEEP records), resumed one from a Last-Event-ID
(STATE/resume.sse, STATE/resume.from) and fetched GET /events
(STATE/events.json). This checks every record of the launches reached every
client once, in order, with the pid, ppid and uid the shell saw, the missed
event, the resume, and that the consumer is a worker running as nobody.
Prints one line per check: "ok - ..." or "not ok - ...: why".
"""
import json
import os
import subprocess
import sys

from checklib import check

STATE, KEEP, NCLIENTS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def events(name):
    """the server-sent events of STATE/name.sse: [(event, id, data)] (comments dropped)"""
    text = open(os.path.join(STATE, name + ".sse"), "rb").read().decode("utf-8")
    out = []
    for block in text.split("\n\n"):
        ev, eid, data = "message", None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                ev = value
            elif field == "id":
                eid = int(value)
            elif field == "data":
                data.append(value)
        if data:
            out.append((ev, eid, json.loads("\n".join(data))))
    return out


def headers(name):
    h = {}
    for line in open(os.path.join(STATE, name + ".head"), encoding="latin-1").read().splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            h[k.strip().lower()] = v.strip()
    return h


launches = []
for line in open(os.path.join(STATE, "launch.out")):
    path, pid, ppid, uid = line.split()
    launches.append({"filename": path, "pid": int(pid), "ppid": int(ppid), "uid": int(uid)})
ours = {l["filename"] for l in launches}


def client_check(i):
    def fn():
        h = headers("client%d" % i)
        if not h.get("content-type", "").startswith("text/event-stream"):
            return "Content-Type %r" % h.get("content-type")
        evs = events("client%d" % i)
        if any(ev == "missed" for ev, _, _ in evs):
            return "a missed event on a client that keeps up"
        ids = [eid for ev, eid, _ in evs]
        if ids != sorted(set(ids)):
            return "ids not strictly increasing"
        got = [d for ev, _, d in evs if d.get("filename") in ours]
        if [d["filename"] for d in got] != [l["filename"] for l in launches]:
            return "records of the launches, in order: %s; want %d of them" % (
                [os.path.basename(d["filename"]) for d in got], len(launches))
        for d, l in zip(got, launches):
            for k in ("pid", "ppid", "uid"):
                if d[k] != l[k]:
                    return "%s: %s %r, the shell saw %r" % (l["filename"], k, d[k], l[k])
            if d["comm"] != os.path.basename(l["filename"])[:15]:
                return "%s: comm %r" % (l["filename"], d["comm"])
        return None
    return fn


for i in range(1, NCLIENTS + 1):
    check("stream client %d of %d (worker %s) got each of the %d execs once, in order, with pid/ppid/uid/comm"
          % (i, NCLIENTS, headers("client%d" % i).get("x-luaebpf-worker", "?"), len(launches)),
          client_check(i))


def spread():
    served = sorted({headers("client%d" % i).get("x-luaebpf-worker") for i in range(1, NCLIENTS + 1)})
    if len(served) < 2:
        return "all %d clients were served by worker %s" % (NCLIENTS, served)
    return None


check("the streams were served by more than one worker (the consumer's and others)", spread)


def late():
    evs = events("late")
    if not evs or evs[0][0] != "missed":
        return "the first event is %r, not missed" % (evs[:1],)
    # records still arriving may overwrite the oldest kept slot while the
    # client reads it: the server then says missed again, with the new count
    n_missed = 0
    while n_missed < len(evs) and evs[n_missed][0] == "missed":
        n_missed += 1
    missed = sum(evs[i][2]["missed"] for i in range(n_missed))
    if missed < 20:
        return "missed %d, fewer than the 20 records past the %d kept" % (missed, KEEP)
    if len(evs) <= n_missed or evs[n_missed][1] != missed + 1:
        return "after missing %d of seq 1.., the next id is %r, not %d" % (
            missed, evs[n_missed][1] if len(evs) > n_missed else None, missed + 1)
    if len(evs) != n_missed + 5 or any(ev != "message" for ev, _, _ in evs[n_missed:]):
        return "limit=5: %d events after the missed ones" % (len(evs) - n_missed)
    return None


check("a late client (since=0, after more than %d records) gets event 'missed' with the count, "
      "then the oldest record kept" % KEEP, late)


def resume():
    since = int(open(os.path.join(STATE, "resume.from")).read())
    evs = events("resume")
    ids = [eid for _, eid, _ in evs]
    if ids != list(range(since + 1, since + 1 + len(ids))) or len(ids) != 3:
        return "Last-Event-ID %d gave ids %r, not the 3 after it" % (since, ids)
    return None


check("a client sending Last-Event-ID resumes right after it", resume)


def consumer():
    streams = json.load(open(os.path.join(STATE, "events.json")))
    s = [x for x in streams if x["name"] == "events"]
    if len(s) != 1:
        return "GET /events lists %r" % streams
    s = s[0]
    if s["keep"] != KEEP or s["head"] < len(launches):
        return "keep %r, head %r" % (s["keep"], s["head"])
    pid = s["consumer_pid"]
    user = subprocess.check_output(["ps", "-o", "user=", "-p", str(pid)]).decode().strip()
    master = open(os.path.join(STATE, "nginx.pid")).read().strip()
    ppid = subprocess.check_output(["ps", "-o", "ppid=", "-p", str(pid)]).decode().strip()
    if user != "nobody" or ppid != master:
        return "the consumer pid %s runs as %r, parent %s (master %s)" % (pid, user, ppid, master)
    st = s["stats"] or {}
    if st.get("records", 0) < len(launches):
        return "consumer stats %r" % st
    return None


check("GET /events: one consumer, a worker running as nobody, its stats counting the records", consumer)
