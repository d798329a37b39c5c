// globals.bpf.c: global variables in every data section, for obj:global.
// On each sys_enter of the process whose pid is in target_pid (.rodata,
// set before load), it adds cfg.step (.data) to hits (.bss) and copies the
// .rodata threshold into seen_threshold (.bss), so a test can tell that
// the values set before load are the ones the kernel runs with. It also
// counts in total (.data.stats) and calls_seen (.data.priv, which holds only
// a static variable, so libbpf leaves it unmappable).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct config {
    __u32 step;
    __u16 port;
    char tag[6];
};

const volatile __u32 threshold = 7;        // .rodata
const volatile __u32 target_pid = 0;       // .rodata
const volatile __s16 offsets[3] = {-1, 0, 1}; // .rodata, an array

__u64 hits = 0;                            // .bss
__u64 seen_threshold = 0;                  // .bss
struct config cfg = {.step = 1, .port = 80, .tag = "init"}; // .data
__u64 total SEC(".data.stats") = 5;        // a custom data section
// only static variables: libbpf does not make this section mmapable
static volatile __u64 calls_seen SEC(".data.priv") = 11;

SEC("raw_tracepoint/sys_enter")
int count_calls(struct bpf_raw_tracepoint_args *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
        return 0;
    __sync_fetch_and_add(&hits, cfg.step);
    seen_threshold = threshold;
    total += 1;
    calls_seen += 1;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
