/* bench/pagecost.c: does a bpf() syscall make the pages touched after it
 * dearer (a TLB flush per syscall would)? Each iteration makes one per-CPU
 * map lookup, as bench/percpu.lua's C side does, or none, then reads one
 * cache line in each of P distinct pages; the best of 5 rounds of this
 * thread's CPU time per iteration is printed for both, and the difference
 * is what the syscall adds to those P pages. Not part of make bench: a
 * check of the README's account of where per-CPU lookups spend their time.
 *   cc -O2 -o /tmp/pagecost bench/pagecost.c -lbpf && /tmp/pagecost */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    enum { ITERS = 100000, MAXP = 64 };
    int ncpus = libbpf_num_possible_cpus();
    uint32_t key = 1;
    uint64_t *val = calloc((size_t)ncpus, 8);
    int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, NULL, 4, 8, 16, NULL);
    /* pages 17 apart, so they share no cache set or page-table line by accident */
    volatile char *mem = mmap(NULL, (size_t)MAXP * 17 * 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (fd < 0 || !val || mem == MAP_FAILED || bpf_map_update_elem(fd, &key, val, 0)) {
        perror("pagecost: setup");
        return 1;
    }
    printf("pages  no syscall  after bpf lookup  (ns per iteration, CPU time)\n");
    for (int p = 0; p <= MAXP; p = p < 4 ? p + 1 : p * 2) {
        double best[2] = {1e18, 1e18};
        for (int sys = 0; sys < 2; sys++)
            for (int round = 0; round < 5; round++) {
                long sink = 0;
                double t0 = cpu_ns();
                for (int i = 0; i < ITERS; i++) {
                    if (sys && bpf_map_lookup_elem(fd, &key, val))
                        return perror("pagecost: lookup"), 1;
                    for (int j = 0; j < p; j++)
                        sink += mem[(size_t)j * 17 * 4096 + (size_t)(i & 63) * 64];
                }
                double t = (cpu_ns() - t0) / ITERS;
                if (t < best[sys])
                    best[sys] = t;
                if (sink == 42)
                    puts("");
            }
        printf("%5d  %10.1f  %16.1f\n", p, best[0], best[1]);
    }
    return 0;
}
