// bench_btf.bpf.c: one map for bench/btf.lua, whose value is a struct of the
// usual shape (integers, a char array, a nested struct), to time the "btf"
// codec against the same layout written by hand. No program touches it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct flow_io {
    __u64 bytes;
    __u64 packets;
};

struct flow_value {
    __u32 pid;
    __u32 tgid;
    char comm[16];
    struct flow_io io;
    __u64 ts;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 100000);
    __type(key, __u32);
    __type(value, struct flow_value);
} bench_flows SEC(".maps");

/* a program so that loaders accept the object; it only reads the map */
SEC("raw_tracepoint/sys_enter")
int touch(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 k = 0;
    bpf_map_lookup_elem(&bench_flows, &k);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
