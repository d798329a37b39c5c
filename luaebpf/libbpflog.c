/* libbpflog.c: libbpf's log, captured while luaebpf calls libbpf (it never
 * goes to stderr), handed line by line to a load's opts.log, and read for
 * what an error should say: its last lines, or the verifier's reason for
 * refusing a program. object.c calls it around every libbpf call that may
 * print. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

/* libbpf's print callback is process-wide and has no user pointer. Between
 * luaebpf_log_begin and luaebpf_log_end, which enclose libbpf calls and no
 * Lua, what libbpf prints on this thread (print.c routes it) is appended to
 * this thread's buffer, grown to whatever libbpf prints: a verifier log comes
 * as one call of up to 16 MiB, its reason at the very end. */
static _Thread_local struct {
    char *buf;
    size_t len, cap;
    luaebpf_print_section outer; /* restored by luaebpf_log_end */
} logc;

static int log_capture(enum libbpf_print_level level, const char *fmt, va_list ap) {
    if (level == LIBBPF_DEBUG)
        return 0; /* debug chatter is not for users */
    va_list again;
    va_copy(again, ap); /* one pass to size the text, one to write it */
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n <= 0)
        return 0;
    size_t need = logc.len + (size_t)n + 1;
    if (need > logc.cap) {
        size_t cap = logc.cap ? logc.cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = realloc(logc.buf, cap);
        if (!p)
            return 0; /* out of memory: the log stays as it was */
        logc.buf = p;
        logc.cap = cap;
    }
    vsnprintf(logc.buf + logc.len, (size_t)n + 1, fmt, ap);
    VALGRIND_MAKE_MEM_DEFINED(logc.buf + logc.len, n); /* the verifier's log, written by the kernel */
    logc.len += (size_t)n;
    return 0;
}

void luaebpf_log_begin(void) {
    logc.len = 0;
    logc.outer = luaebpf_print_begin(log_capture, 0);
}

/* ends the capture and pushes what was captured, as a string */
void luaebpf_log_end(lua_State *L) {
    luaebpf_print_end(logc.outer);
    lua_pushlstring(L, logc.buf ? logc.buf : "", logc.len); /* copies before any GC step */
    free(logc.buf); /* a big log is not kept for the life of the process */
    logc.buf = NULL;
    logc.len = logc.cap = 0;
}

static int is_space(char c) {
    return c == '\n' || c == ' ';
}

/* pushes the last `lines` non-empty lines of log[0, end), joined with " | " */
void luaebpf_push_log_lines(lua_State *L, const char *log, size_t end, int lines) {
    luaL_Buffer b;
    while (end > 0 && is_space(log[end - 1]))
        end--;
    size_t start = end;
    for (int seen = 0; start > 0; start--)
        if (log[start - 1] == '\n' && ++seen == lines)
            break;
    luaL_buffinit(L, &b); /* log stays anchored below the buffer */
    for (size_t i = start; i < end; i++) {
        if (log[i] != '\n')
            luaL_addchar(&b, log[i]);
        else if (i + 1 < end && log[i + 1] != '\n')
            luaL_addstring(&b, " | ");
    }
    luaL_pushresult(&b);
}

/* start of the line holding position p of log */
static size_t line_start(const char *log, size_t p) {
    while (p > 0 && log[p - 1] != '\n')
        p--;
    return p;
}

/* is the line at s an instruction of the verifier's log, "12: (79) r1 = ..."? */
static int is_insn(const char *s) {
    const char *d = s;
    while (*d >= '0' && *d <= '9')
        d++;
    return d > s && strncmp(d, ": (", 3) == 0;
}

/* The verifier's verdict in the log at idx (a string), pushed as "the
 * verifier refused it: <instruction> | <reason>": the lines from the failing
 * instruction to the statistics that end the kernel's log ("processed N
 * insns ..."), inside libbpf's BEGIN/END markers. Returns 0 and pushes
 * nothing when the log holds no verifier part. */
static int push_verifier_reason(lua_State *L, int idx) {
    const char *log = lua_tostring(L, idx);
    const char *endp = strstr(log, "-- END PROG LOAD LOG --");
    if (!endp || !strstr(log, "-- BEGIN PROG LOAD LOG --"))
        return 0;
    size_t stop = line_start(log, (size_t)(endp - log));
    for (;;) { /* drop the statistics lines that close the kernel's log */
        size_t prev_end = stop;
        while (prev_end > 0 && is_space(log[prev_end - 1]))
            prev_end--;
        size_t s = line_start(log, prev_end);
        if (prev_end == 0 || !(strncmp(log + s, "processed ", 10) == 0 ||
                               strncmp(log + s, "verification time ", 18) == 0 ||
                               strncmp(log + s, "stack depth ", 12) == 0))
            break;
        stop = s;
    }
    int lines = 2; /* from the failing instruction on, when it is near the end */
    for (size_t e = stop, n = 1; n <= 6 && e > 0; n++) {
        while (e > 0 && is_space(log[e - 1]))
            e--;
        size_t s = line_start(log, e);
        if (is_insn(log + s)) {
            lines = (int)n;
            break;
        }
        e = s;
    }
    lua_pushliteral(L, "the verifier refused it: ");
    luaebpf_push_log_lines(L, log, stop, lines);
    lua_concat(L, 2);
    return 1;
}

/* hands the log at idx to opts.log (at stack index fn), line by line */
void luaebpf_log_deliver(lua_State *L, int fn, int idx) {
    size_t len, start = 0;
    const char *log = lua_tolstring(L, idx, &len); /* anchored at idx while fn runs */
    if (!fn)
        return;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || log[i] == '\n') {
            if (i > start) {
                lua_pushvalue(L, fn);
                lua_pushlstring(L, log + start, i - start);
                lua_call(L, 1, 0);
            }
            start = i + 1;
        }
    }
}

/* raises the error of a bpf_object__load that failed with errno no; the
 * log captured meanwhile is the string at log_idx */
int luaebpf_raise_load_failure(lua_State *L, const char *path, int no, int log_idx) {
    size_t len;
    const char *log = lua_tolstring(L, log_idx, &len);
    int refused = push_verifier_reason(L, log_idx);
    if (!refused && (no == EPERM || no == EACCES)) /* libbpf's text blames memlock */
        lua_pushliteral(L, "loading BPF programs needs CAP_BPF and CAP_PERFMON (or root)");
    else if (!refused)
        luaebpf_push_log_lines(L, log, len, 4);
    luaebpf_pusherror_about(L, "load", no, "object", path, lua_tostring(L, -1));
    if (refused && (no == EACCES || no == EPERM || no == EINVAL)) {
        /* the verifier ran, so the caller may load programs: this is its
         * "no" to the program, not a missing privilege */
        lua_pushliteral(L, "invalid");
        lua_setfield(L, -2, "class");
    }
    return lua_error(L);
}

