// hist.bpf.c: a log2 histogram of system call latency. sys_enter stores the
// time per thread; sys_exit adds one to the slot log2(elapsed ns) of a
// per-CPU array, so CPUs never contend on a slot.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SLOTS 32

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, __u32);
    __type(value, __u64);
} start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} latency SEC(".maps");

static __always_inline __u32 log2l(__u64 v)
{
    __u32 r = 0;
#pragma unroll
    for (int i = 32; i > 0; i /= 2) {
        if (v >= (1ULL << i)) {
            v >>= i;
            r += i;
        }
    }
    return r;
}

SEC("raw_tracepoint/sys_enter")
int on_enter(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 now = bpf_ktime_get_ns();

    bpf_map_update_elem(&start, &tid, &now, BPF_ANY);
    return 0;
}

SEC("raw_tracepoint/sys_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *t0 = bpf_map_lookup_elem(&start, &tid), *slot;
    __u32 idx;

    if (!t0)
        return 0;
    idx = log2l(bpf_ktime_get_ns() - *t0);
    bpf_map_delete_elem(&start, &tid);
    if (idx >= SLOTS)
        idx = SLOTS - 1;
    slot = bpf_map_lookup_elem(&latency, &idx);
    if (slot)
        *slot += 1; /* per-CPU: no other CPU writes this slot */
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
