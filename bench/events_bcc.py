"""bench/events_bcc.py: the per-record figure of bench/events.lua for BCC's
Python ring buffer reader: N records of the same 48-byte struct (u32 pid,
u32 seq, u64 ts, u64 value, char comm[16], u32 flags) written into a 16 MiB
ring, then drained by b.ring_buffer_consume() with a callback that decodes
each record (b["events"].event(data)) into a dict of the 6 fields and calls
one Python function. The records come from a raw tracepoint on sys_enter of
this process that emits up to 100 per syscall while a countdown lasts (this
script calls getppid() to trigger it), untimed; the drain is timed in thread
CPU time; medians of rounds.
  /usr/bin/python3 bench/events_bcc.py [records_per_round [rounds]]
Run by bench/events_bcc.sh, which finds python3-bpfcc and kernel headers."""
import gc
import os
import statistics
import sys
import time

from bcc import BPF

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 9
PER_CALL = 100

PROG = r"""
struct bench_event {
    u32 pid;
    u32 seq;
    u64 ts;
    u64 value;
    char comm[16];
    u32 flags;
};
BPF_RINGBUF_OUTPUT(events, 4096);      /* 16 MiB */
BPF_ARRAY(remaining, u64, 1);          /* records still to emit */
BPF_ARRAY(next_seq, u64, 1);

RAW_TRACEPOINT_PROBE(sys_enter)
{
    if ((u32)(bpf_get_current_pid_tgid() >> 32) != TARGET)
        return 0;
    int k = 0;
    u64 *left = remaining.lookup(&k), *seqp = next_seq.lookup(&k);
    if (!left || !seqp)
        return 0;
    for (int i = 0; i < PER_CALL; i++) {
        if (*left == 0)
            break;
        struct bench_event *e = events.ringbuf_reserve(sizeof(*e));
        if (!e)
            break;
        u32 seq = *seqp;
        e->pid = TARGET;
        e->seq = seq;
        e->ts = bpf_ktime_get_ns();
        e->value = ((u64)seq * 2654435761u + 7) & ((1ULL << 52) - 1);
        __builtin_memcpy(e->comm, "bench-event-000", 16);
        e->comm[12] = '0' + seq % 10;
        e->comm[13] = '0' + seq / 10 % 10;
        e->comm[14] = '0' + seq / 100 % 10;
        e->flags = seq & 0xff;
        events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
        *seqp = seq + 1;
        *left -= 1;
    }
    return 0;
}
"""

b = BPF(text=PROG, cflags=["-DTARGET=%d" % os.getpid(), "-DPER_CALL=%d" % PER_CALL])
events = b["events"]
remaining = b["remaining"]
count = 0
total = 0


def sink(rec):
    global count, total
    count += 1
    total += rec["seq"]


def on_record(ctx, data, size):
    e = events.event(data)
    sink({"pid": e.pid, "seq": e.seq, "ts": e.ts, "value": e.value, "comm": e.comm,
          "flags": e.flags})


events.open_ring_buffer(on_record)


def fill(n):
    remaining[remaining.Key(0)] = remaining.Leaf(n)
    for _ in range(n // PER_CALL + 2):
        os.getppid()


def drain():
    global count, total
    fill(N)
    count, total = 0, 0
    gc.collect()
    t0 = time.thread_time_ns()
    b.ring_buffer_consume()
    t = time.thread_time_ns() - t0
    if count != N:
        sys.exit("events_bcc: FAILED: %d of %d records" % (count, N))
    return t / N


for _ in range(3):  # warm up: the ring's pages mapped, the paths warm
    drain()
got = []
for r in range(ROUNDS):
    got.append(drain())
    print("  round %d: bcc %.1f ns/record" % (r + 1, got[-1]))
med = statistics.median(got)
print("events_bcc: ring_buffer_consume %.1f ns/record (%.2f M records/s), %d records per round, "
      "median of %d rounds" % (med, 1e3 / med, N, ROUNDS))
