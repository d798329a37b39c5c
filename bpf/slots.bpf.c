// slots.bpf.c: a map of log2 histograms kept the way BCC tools keep them, one
// per key in a value struct holding a `slots` array, for the OpenResty
// example's live page test (examples/openresty/page_fixture.lua fills it).
// No program touches it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SLOTS 20

struct proc_key {
    __u32 pid;
    char comm[12];
};

struct proc_hist {
    __u64 slots[SLOTS];
    __u64 sum;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, struct proc_key);
    __type(value, struct proc_hist);
} proc_lat SEC(".maps");

char LICENSE[] SEC("license") = "GPL";
