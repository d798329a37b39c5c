/* perfbuf.c: the Perfbuf consumer, over libbpf's perf_buffer. ebpf.perfbuf(m
 * [, opts]) opens a perf buffer of opts.pages pages on every online CPU and
 * installs them in the perf_event_array m; records and the kernel's
 * lost-sample reports come through libbpf's raw event callback, which (unlike
 * the sample callback) can stop libbpf after a record. Delivery, runs and the
 * lifecycle are events.c's.
 *
 * The consumer holds a dup of the map's fd (libbpf uses it again when it
 * frees the buffers, to empty the map's slots) and a claim on the map's id:
 * a second consumer would replace the first one's buffers in the map. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

typedef struct perfbuf {
    luaebpf_events ev;      /* first: events.c sees a perfbuf as this */
    struct perf_buffer *pb;
    luaebpf_source src;
    luaebpf_claim claim;
    int fd;                 /* our dup of the map's fd; -1 when none */
    int ncpus;
    uint64_t lost;
    uint64_t *lost_per_cpu; /* ncpus counters */
} perfbuf;

static void perfbuf_release(luaebpf_events *ev) {
    perfbuf *p = (perfbuf *)ev;
    perf_buffer__free(p->pb); /* first: it empties the map's slots through fd */
    p->pb = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    luaebpf_claim_drop(&p->claim);
    free(p->lost_per_cpu);
    p->lost_per_cpu = NULL;
}

/* libbpf warns on stderr whenever a callback stops it, which is how a
 * callback's error or the records() step ends a read: those lines are not
 * for users, so libbpf's calls run in a quiet section (print.c) */
static int perfbuf_poll_buffers(luaebpf_events *ev, int timeout_ms) {
    luaebpf_print_section outer = luaebpf_print_begin(NULL, 1);
    int rc = perf_buffer__poll(((perfbuf *)ev)->pb, timeout_ms);
    int no = errno;
    luaebpf_print_end(outer);
    errno = no;
    return rc;
}

static int perfbuf_consume_buffers(luaebpf_events *ev) {
    luaebpf_print_section outer = luaebpf_print_begin(NULL, 1);
    int rc = perf_buffer__consume(((perfbuf *)ev)->pb);
    int no = errno;
    luaebpf_print_end(outer);
    errno = no;
    return rc;
}

static int perfbuf_epoll_fd(luaebpf_events *ev) {
    return perf_buffer__epoll_fd(((perfbuf *)ev)->pb);
}

static const luaebpf_events_ops perfbuf_ops = {"perfbuf", perfbuf_poll_buffers,
                                               perfbuf_consume_buffers, perfbuf_epoll_fd,
                                               perfbuf_release, 0, 1, NULL};

struct sample_raw { /* PERF_RECORD_SAMPLE with PERF_SAMPLE_RAW */
    struct perf_event_header header;
    uint32_t size;
    char data[];
};

struct sample_lost { /* PERF_RECORD_LOST */
    struct perf_event_header header;
    uint64_t id;
    uint64_t lost;
};

/* libbpf's raw event callback: ERROR stops libbpf, its read position past e */
static enum bpf_perf_event_ret perf_event(void *ctx, int cpu, struct perf_event_header *e) {
    perfbuf *p = ctx;
    int rc = 0;
    if (e->type == PERF_RECORD_SAMPLE) {
        struct sample_raw *s = (struct sample_raw *)e;
        rc = luaebpf_events_deliver(&p->ev, &p->src, s->data, s->size, cpu);
    } else if (e->type == PERF_RECORD_LOST) {
        uint64_t lost;
        memcpy(&lost, &((struct sample_lost *)e)->lost, sizeof lost);
        p->lost += lost;
        if (cpu >= 0 && cpu < p->ncpus)
            p->lost_per_cpu[cpu] += lost;
        rc = luaebpf_events_lost(&p->ev, cpu, lost);
    }
    return rc < 0 ? LIBBPF_PERF_EVENT_ERROR : LIBBPF_PERF_EVENT_CONT;
}

/* opts.pages (power of 2, default 8) and opts.lost (a function, kept in the user value) */
static size_t check_perf_options(lua_State *L, int idx) {
    static const char *const known[] = {"record", "btf", "int64", "pages", "lost", NULL};
    if (lua_isnoneornil(L, idx))
        return 8;
    luaL_checktype(L, idx, LUA_TTABLE);
    luaebpf_check_options(L, idx, "perfbuf options", known);
    lua_getfield(L, idx, "lost");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        luaL_error(L, "bad option 'lost': a function expected, got %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, idx, "pages");
    lua_Integer pages = 8;
    if (!lua_isnil(L, -1) && (!luaebpf_tointeger_in(L, -1, 1, 1 << 20, &pages) ||
                              (pages & (pages - 1))))
        luaL_error(L, "bad option 'pages': a power of 2 (pages per CPU) expected, got %s",
                   luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
    return (size_t)pages;
}

/* protected: self, map, opts, pages -> sets the consumer up */
static int perfbuf_setup(lua_State *L) {
    perfbuf *p = lua_touserdata(L, 1);
    luaebpf_map *m = luaebpf_events_map(L, 2, BPF_MAP_TYPE_PERF_EVENT_ARRAY, "perfbuf");
    p->src.codec = luaebpf_record_codec(L, 3, 2);
    luaebpf_getuservalue(L, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "codec");
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "lost");
        lua_setfield(L, -2, "lost");
    }
    snprintf(p->src.name, sizeof p->src.name, "%s", m->name);
    p->src.id = m->id;
    p->ncpus = luaebpf_ncpus();
    p->lost_per_cpu = calloc(p->ncpus > 0 ? (size_t)p->ncpus : 1, sizeof *p->lost_per_cpu);
    if (!p->lost_per_cpu)
        return luaL_error(L, "not enough memory");
    luaebpf_claim_take(L, &p->claim, m, "perfbuf", LUAEBPF_PERFBUF, p, "map",
                       "a second one would replace its buffers");
    p->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3);
    if (p->fd < 0)
        return luaebpf_raise(L, "perfbuf", errno, m->name, m->id, "cannot duplicate the fd");
    struct perf_event_attr attr = {0}; /* what perf_buffer__new asks for */
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_BPF_OUTPUT;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.sample_period = 1;
    attr.wakeup_events = 1;
    p->pb = perf_buffer__new_raw(p->fd, (size_t)lua_tointeger(L, 4), &attr, perf_event, p, NULL);
    if (!p->pb)
        return luaebpf_raise(L, "perfbuf", errno, m->name, m->id, NULL);
    return 0;
}

/* core.perfbuf(m [, opts]) */
static int core_perfbuf(lua_State *L) {
    lua_settop(L, 2);
    luaebpf_check_map(L, 1, "perfbuf");
    size_t pages = check_perf_options(L, 2);
    perfbuf *p = luaebpf_newuserdata(L, sizeof *p); /* 3: born closed */
    memset(p, 0, sizeof *p);
    p->fd = -1;
    luaL_setmetatable(L, LUAEBPF_PERFBUF);
    lua_newtable(L);
    luaebpf_setuservalue(L, 3);
    p->ev.ops = &perfbuf_ops;                       /* from here on the GC releases */
    lua_pushcfunction(L, perfbuf_setup);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushinteger(L, (lua_Integer)pages);
    if (lua_pcall(L, 4, 0, 0) != 0) {               /* nothing stays open */
        perfbuf_release(&p->ev);
        return lua_error(L);
    }
    p->ev.open = 1;
    lua_settop(L, 3);
    return 1;
}

/* pb:stats() -> { records, bytes, polls, lost, lost_per_cpu = { [cpu + 1] = n } } */
static int perfbuf_stats(lua_State *L) {
    perfbuf *p = (perfbuf *)luaebpf_events_check(L, 1, "stats", 0);
    int ncpus = p->ncpus;
    lua_createtable(L, 0, 5);
    lua_createtable(L, ncpus, 0); /* allocations may close p: copy its counters first */
    for (int i = 0; i < ncpus && p->lost_per_cpu; i++) {
        lua_pushinteger(L, (lua_Integer)p->lost_per_cpu[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "lost_per_cpu");
    lua_pushinteger(L, (lua_Integer)p->ev.records);
    lua_setfield(L, -2, "records");
    lua_pushinteger(L, (lua_Integer)p->ev.bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, (lua_Integer)p->ev.polls);
    lua_setfield(L, -2, "polls");
    lua_pushinteger(L, (lua_Integer)p->lost);
    lua_setfield(L, -2, "lost");
    return 1;
}

static int perfbuf_tostring(lua_State *L) {
    perfbuf *p = luaL_checkudata(L, 1, LUAEBPF_PERFBUF);
    lua_pushfstring(L, "%s: %p (map '%s'%s)", LUAEBPF_PERFBUF, (void *)p, p->src.name,
                    p->ev.open ? "" : ", closed");
    return 1;
}

void luaebpf_perfbuf_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"poll", luaebpf_events_poll}, {"consume", luaebpf_events_consume},
        {"records", luaebpf_events_records}, {"fd", luaebpf_events_fd},
        {"stats", perfbuf_stats}, {"close", luaebpf_events_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", luaebpf_events_gc}, {"__close", luaebpf_events_close},
        {"__tostring", perfbuf_tostring}, {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_PERFBUF, "Perfbuf", meta, methods, 0);
    lua_pushcfunction(L, core_perfbuf);
    lua_setfield(L, -2, "perfbuf");
}
