/* valgrind.h: VALGRIND_MAKE_MEM_DEFINED, or nothing without valgrind's headers.
 * valgrind 3.19 does not know every bpf(2) command (batch lookups, BTF info),
 * so memory the kernel filled through them looks undefined to memcheck; the
 * callers mark exactly the bytes the kernel reported writing. Outside
 * valgrind the macro costs nothing. */
#ifndef LUAEBPF_VALGRIND_H
#define LUAEBPF_VALGRIND_H
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif
#endif
