// shapes.bpf.c: maps whose BTF holds every shape the "btf" codec decodes, for
// the specs: integers of every size and sign, bool, char arrays, arrays,
// nested structs, unions, anonymous members, enums, typedefs, const,
// bitfields, padding, and a struct bpf_spin_lock. No program touches them.
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

typedef __u32 pid_type;

enum color { RED = 0, GREEN = 1, BLUE = 7 };

struct inner {
    __u16 port;
    __s8 delta;
    __u64 bytes; /* padding before: offset 8 */
};

struct shape_key {
    pid_type pid;
    char comm[8];
};

struct shape_value {
    __u8 u8v;
    __s16 s16v;
    __s32 s32v;
    __u64 u64v;
    __s64 s64v;
    bool flag;
    char name[12];
    __u32 list[3];
    struct inner in;
    union {
        __u32 as_u32;
        __u8 as_bytes[4];
    } u;
    struct {
        __u16 anon_a;
        __u16 anon_b;
    };
    enum color color;
    const volatile __u32 cv;
    __u32 bf_lo : 3, bf_mid : 12, bf_hi : 17;
    __s32 bf_signed : 5;
};

struct locked_value {
    struct bpf_spin_lock lock;
    __u64 a;
    __u64 b;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, struct shape_key);
    __type(value, struct shape_value);
} shapes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, enum color);
} colors SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, struct locked_value);
} locked SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16);
    __type(key, __u64);
    __type(value, struct inner);
} percpu_inner SEC(".maps");

/* a program so that loaders accept the object; it only reads a map */
SEC("raw_tracepoint/sys_enter")
int touch(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 k = 0;
    bpf_map_lookup_elem(&colors, &k);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
