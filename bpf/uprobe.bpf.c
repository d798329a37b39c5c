// uprobe.bpf.c: uprobes for obj:attach(name, { binary =, func = | offset =,
// pid =, retprobe = }). on_call counts the calls of the probed function and
// sums its first argument; on_return counts its returns and sums the values
// it returned. All in .bss, read with obj:global.
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 calls = 0;
__u64 arg_sum = 0;
__u64 returns = 0;
__u64 ret_sum = 0;

SEC("uprobe")
int BPF_KPROBE(on_call, int x)
{
    __sync_fetch_and_add(&calls, 1);
    __sync_fetch_and_add(&arg_sum, x);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_return, int ret)
{
    __sync_fetch_and_add(&returns, 1);
    __sync_fetch_and_add(&ret_sum, ret);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
