// bench_events.bpf.c: the producers of bench/events.lua. One record type,
// struct bench_event (6 fields, 48 bytes with its tail padding), sent two ways:
//   fill     SEC("syscall"), run by BPF_PROG_TEST_RUN: writes ctx->count
//            records into bench_rb at once (bpf_loop, no wakeups), so a timed
//            round consumes a fixed batch with no live producer beside it;
//   on_enter raw tracepoint sys_enter: while bench_cfg says so, one record per
//            syscall of the process bench_cfg names (ctx->per_call of them),
//            into bench_rb (mode 1) or bench_pb (mode 2): the sustained run.
// Every record a program could not send is counted in bench_drops (per CPU):
// a failed bpf_ringbuf_reserve, or a bpf_perf_event_output that failed.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bench_event {
    __u32 pid;
    __u32 seq;
    __u64 ts;
    __u64 value;
    char comm[16];
    __u32 flags;
};

/* puts struct bench_event in the object's BTF, where consumers look it up
 * (record = "struct bench_event"): a type only local variables use has none */
struct bench_event *unused_bench_event __attribute__((unused));

struct bench_cfg {
    __u32 tgid;     /* the producer process; 0: off */
    __u32 mode;     /* 1: ring buffer, 2: perf buffer */
    __u32 per_call; /* records per syscall (1..64) */
    __u32 pad;
};

/* what BPF_PROG_TEST_RUN passes to fill */
struct fill_args {
    __u32 count;
    __u32 base;  /* the first seq */
    __u32 pid;
    __u32 sent;  /* out: records sent */
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 16 << 20);
} bench_rb SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(__u32));
} bench_pb SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct bench_cfg);
} bench_cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} bench_drops SEC(".maps");

/* the record every producer writes: seq determines every field but pid and ts;
 * value keeps 52 bits, so that LuaJIT's numbers hold it at any seq */
static __always_inline void make_event(struct bench_event *e, __u32 pid, __u32 seq)
{
    e->pid = pid;
    e->seq = seq;
    e->ts = bpf_ktime_get_ns();
    e->value = ((__u64)seq * 2654435761u + 7) & ((1ULL << 52) - 1);
    __builtin_memcpy(e->comm, "bench-event-000", 16);
    e->comm[12] = '0' + seq % 10;
    e->comm[13] = '0' + seq / 10 % 10;
    e->comm[14] = '0' + seq / 100 % 10;
    e->flags = seq & 0xff;
}

static __always_inline void count_drop(void)
{
    __u32 k = 0;
    __u64 *d = bpf_map_lookup_elem(&bench_drops, &k);
    if (d)
        *d += 1;
}

static long fill_one(__u32 i, void *data)
{
    struct fill_args *a = data;
    struct bench_event *e = bpf_ringbuf_reserve(&bench_rb, sizeof(*e), 0);
    if (!e) {
        count_drop();
        return 1; /* the ring is full: stop */
    }
    make_event(e, a->pid, a->base + i);
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    a->sent++;
    return 0;
}

SEC("syscall")
int fill(struct fill_args *ctx)
{
    /* field by field: a copy of the whole struct lets clang pass count to
     * bpf_loop in a 64-bit register whose upper half is base (-E2BIG) */
    struct fill_args a = {.base = ctx->base, .pid = ctx->pid};
    __u64 n = ctx->count;
    bpf_loop(n, fill_one, &a, 0);
    ctx->sent = a.sent;
    return 0;
}

/* the next seq of each transport (.bss): one producer thread, so no atomics
 * (clang 14 cannot use the fetch-add result at -mcpu=v1) */
__u32 seq_rb, seq_pb;

SEC("raw_tracepoint/sys_enter")
int on_enter(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 k = 0;
    struct bench_cfg *cfg = bpf_map_lookup_elem(&bench_cfg, &k);
    if (!cfg || !cfg->tgid || (__u32)(bpf_get_current_pid_tgid() >> 32) != cfg->tgid)
        return 0;
    __u32 pid = cfg->tgid, n = cfg->per_call;
    for (__u32 i = 0; i < 64 && i < n; i++) {
        if (cfg->mode == 1) {
            struct bench_event *e = bpf_ringbuf_reserve(&bench_rb, sizeof(*e), 0);
            if (!e) {
                count_drop();
                continue;
            }
            make_event(e, pid, seq_rb++);
            bpf_ringbuf_submit(e, 0);
        } else if (cfg->mode == 2) {
            struct bench_event e;
            make_event(&e, pid, seq_pb++);
            if (bpf_perf_event_output(ctx, &bench_pb, BPF_F_CURRENT_CPU, &e, sizeof(e)))
                count_drop();
        }
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
