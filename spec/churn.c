/* churn.c: a second process that changes a map while the specs read it.
 *   churn PATH LO HI SECONDS
 * opens the pinned hash map PATH (u32 keys, values of its own size) and,
 * until SECONDS have passed, inserts and deletes keys in [LO, HI) as fast as
 * it can, leaving every key outside that range alone. It prints the number
 * of inserts and deletes it made and exits 0, or 1 on an unexpected error. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: churn PATH LO HI SECONDS\n");
        return 2;
    }
    uint32_t lo = (uint32_t)strtoul(argv[2], NULL, 10), hi = (uint32_t)strtoul(argv[3], NULL, 10);
    double until = now() + atof(argv[4]);
    int fd = bpf_obj_get(argv[1]);
    if (fd < 0 || hi <= lo) {
        fprintf(stderr, "churn: cannot open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    unsigned char value[4096];
    memset(value, 0x5a, sizeof value);
    unsigned long inserts = 0, deletes = 0;
    uint32_t x = 2463534242u; /* xorshift: a cheap, repeatable key order */
    while (now() < until) {
        for (int i = 0; i < 1000; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            uint32_t key = lo + x % (hi - lo);
            if (x & 0x100000) {
                if (bpf_map_update_elem(fd, &key, value, BPF_ANY) == 0)
                    inserts++;
                else if (errno != E2BIG) {
                    fprintf(stderr, "churn: update: %s\n", strerror(errno));
                    return 1;
                }
            } else if (bpf_map_delete_elem(fd, &key) == 0) {
                deletes++;
            } else if (errno != ENOENT) {
                fprintf(stderr, "churn: delete: %s\n", strerror(errno));
                return 1;
            }
        }
    }
    printf("%lu inserts, %lu deletes\n", inserts, deletes);
    return 0;
}
