// syscount.bpf.c: per-process system call counts. On every sys_enter (a raw
// tracepoint: no kprobes or tracefs needed) it adds one to the count of the
// calling process, keyed by its pid and command name.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct proc_key {
    __u32 pid;
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, struct proc_key);
    __type(value, __u64);
} counts SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int on_enter(struct bpf_raw_tracepoint_args *ctx)
{
    struct proc_key key = {};
    __u64 one = 1, *count;

    key.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    count = bpf_map_lookup_elem(&counts, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
