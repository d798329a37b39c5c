/* print.c: libbpf's print callback, shared by every Lua state of the process.
 * libbpf has one print callback for the whole process, with no user pointer.
 * luaebpf wants it around some of its own libbpf calls only: libbpflog.c
 * captures what a load prints (the verifier's log), perfbuf.c hides the
 * warning libbpf prints whenever a callback stops it. Swapping the callback
 * in and out around each call is not safe with two Lua states in two
 * threads: one thread puts back the callback the other just installed, and
 * a luaebpf callback stays libbpf's for good (or the other thread loses its
 * capture). So both go through here: while any thread is in a section,
 * print_dispatch is libbpf's callback (installed by the first thread to
 * enter, the host's callback put back by the last to leave, counted under a
 * mutex), and what each thread wants lives in thread-local state: a line
 * goes to that thread's capture, or, when it has none, to the host's
 * callback (libbpf's default one prints to stderr) unless quiet drops it.
 * A section holds the mutex only to enter and leave, never across libbpf's
 * calls: a perf buffer's poll (it runs Lua callbacks, which may load
 * objects) nests a load's section inside its own. */
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include "luaebpf.h"

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static int print_users;          /* threads' sections open, under print_lock */
static libbpf_print_fn_t host;   /* the callback before the first section, under print_lock */

/* this thread's wishes: the innermost section's capture, and whether any
 * section asks for libbpf's "stopped" warnings to be dropped */
static _Thread_local libbpf_print_fn_t here_capture;
static _Thread_local int here_quiet;

/* what libbpf prints when a callback stops it: not for users */
static int is_stop_warning(const char *fmt) {
    return strstr(fmt, "error while processing records") ||
           strstr(fmt, "failed to process records");
}

/* libbpf's callback while a section is open anywhere in the process */
static int print_dispatch(enum libbpf_print_level level, const char *fmt, va_list ap) {
    if (here_quiet && is_stop_warning(fmt))
        return 0;
    if (here_capture)
        return here_capture(level, fmt, ap);
    pthread_mutex_lock(&print_lock);
    libbpf_print_fn_t to = host; /* called unlocked: it may call libbpf */
    pthread_mutex_unlock(&print_lock);
    return to ? to(level, fmt, ap) : 0;
}

luaebpf_print_section luaebpf_print_begin(libbpf_print_fn_t capture, int quiet) {
    luaebpf_print_section outer = {here_capture, here_quiet};
    if (capture)
        here_capture = capture;
    here_quiet += quiet != 0;
    pthread_mutex_lock(&print_lock);
    if (print_users++ == 0)
        host = libbpf_set_print(print_dispatch);
    pthread_mutex_unlock(&print_lock);
    return outer;
}

void luaebpf_print_end(luaebpf_print_section outer) {
    pthread_mutex_lock(&print_lock);
    if (--print_users == 0) {
        /* the host's callback back, unless the host set its own meanwhile */
        libbpf_print_fn_t now = libbpf_set_print(host);
        if (now != print_dispatch)
            libbpf_set_print(now);
    }
    pthread_mutex_unlock(&print_lock);
    here_capture = outer.capture;
    here_quiet = outer.quiet;
}
