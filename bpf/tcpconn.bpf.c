// tcpconn.bpf.c: established TCP connections counted by local address,
// remote address, service port and direction, for examples/tcpconn.lua. It
// runs on the inet_sock_set_state tracepoint as a BTF-typed program (tp_btf:
// no kprobes or tracefs needed). A socket reaching ESTABLISHED from SYN_SENT
// is one this host opened (out); from SYN_RECV, one it accepted (in).
// Addresses stay in network byte order, as the kernel holds them, so the
// reader's "ipv4"/"ipv6" decoders turn them into text; the port is converted
// to host order here.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum direction { OUT = 0, IN = 1 };

// the service port: the remote one for connections out, the local one for
// connections in
struct conn4 {
    __u32 laddr;
    __u32 raddr;
    __u16 port;
    __u8 dir;   // enum direction: 0 out, 1 in
    __u8 pad;
};

struct conn6 {
    __u8 laddr[16];
    __u8 raddr[16];
    __u16 port;
    __u8 dir;
    __u8 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct conn4);
    __type(value, __u64);
} conns4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct conn6);
    __type(value, __u64);
} conns6 SEC(".maps");

static __always_inline void count(void *map, const void *key)
{
    __u64 one = 1, *n = bpf_map_lookup_elem(map, key);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(map, key, &one, BPF_ANY); // a racing first insert loses one
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, const struct sock *sk, int oldstate, int newstate)
{
    if (newstate != TCP_ESTABLISHED || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return 0;
    if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
        return 0;
    __u8 dir = oldstate == TCP_SYN_SENT ? OUT : IN;
    __u16 port = dir == OUT ? bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))
                            : BPF_CORE_READ(sk, __sk_common.skc_num);
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

    if (family == AF_INET) {
        struct conn4 k = { .port = port, .dir = dir };
        k.laddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        k.raddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        count(&conns4, &k);
    } else if (family == AF_INET6) {
        struct conn6 k = { .port = port, .dir = dir };
        BPF_CORE_READ_INTO(&k.laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
        BPF_CORE_READ_INTO(&k.raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
        count(&conns6, &k);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
