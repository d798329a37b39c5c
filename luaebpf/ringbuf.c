/* ringbuf.c: the Ringbuf consumer, over libbpf's ring_buffer. ebpf.ringbuf(m
 * or {m1, m2, ...} [, opts]) and rb:add(m [, opts]) each add a ring with its
 * own record codec; rb:stats() reads each ring's fill level from read-only
 * views of its consumer and producer pages (libbpf 1.1 exposes neither).
 * Delivery, runs and the lifecycle are events.c's.
 *
 * Each ring holds a dup of the map's fd (libbpf keeps the fd it is given, and
 * the Map may be closed first) and a claim on the map's id: a ring buffer has
 * one consumer position, so a second consumer in this process is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"

typedef struct ring {
    luaebpf_source src;     /* the record codec, the map's name and id */
    luaebpf_events *ev;
    luaebpf_claim claim;
    int fd;                 /* our dup of the map's fd; -1 when none */
    uint32_t size;          /* max_entries: the data area's bytes */
    int index;              /* 1-based, in the order added: the i given to fn */
    void *pos;              /* read-only: consumer page, then producer page (MAP_FAILED: none) */
    void *prod;
} ring;

typedef struct ringbuf {
    luaebpf_events ev;      /* first: events.c sees a ringbuf as this */
    struct ring_buffer *rb; /* NULL until the first ring */
    ring **rings;
    int n, cap;
    ring *pending;          /* the ring being added: freed if its setup raises */
} ringbuf;

static void ring_free(ring *r) {
    if (!r)
        return;
    luaebpf_claim_drop(&r->claim);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (r->pos)
        munmap(r->pos, page);
    if (r->prod)
        munmap(r->prod, page);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

static void ringbuf_release(luaebpf_events *ev) {
    ringbuf *b = (ringbuf *)ev;
    ring_buffer__free(b->rb); /* first: it uses the rings' fds and maps */
    b->rb = NULL;
    for (int i = 0; i < b->n; i++)
        ring_free(b->rings[i]);
    free(b->rings);
    b->rings = NULL;
    b->n = b->cap = 0;
    ring_free(b->pending);
    b->pending = NULL;
}

static int ringbuf_poll_rings(luaebpf_events *ev, int timeout_ms) {
    return ring_buffer__poll(((ringbuf *)ev)->rb, timeout_ms);
}

static int ringbuf_consume_rings(luaebpf_events *ev) {
    return ring_buffer__consume(((ringbuf *)ev)->rb);
}

static int ringbuf_epoll_fd(luaebpf_events *ev) {
    return ring_buffer__epoll_fd(((ringbuf *)ev)->rb);
}

static const luaebpf_events_ops ringbuf_ops = {"ringbuf", ringbuf_poll_rings,
                                               ringbuf_consume_rings, ringbuf_epoll_fd,
                                               ringbuf_release};

/* libbpf's sample callback: ctx is the ring; a negative answer stops libbpf
 * with the consumer position past this record */
static int ring_sample(void *ctx, void *data, size_t size) {
    ring *r = ctx;
    return luaebpf_events_deliver(r->ev, &r->src, data, size, r->index);
}

/* a new ring, owned by b->pending until it is set up */
static ring *ring_new(lua_State *L, ringbuf *b) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 2;
        ring **p = realloc(b->rings, (size_t)cap * sizeof *p);
        if (!p)
            luaL_error(L, "not enough memory");
        b->rings = p;
        b->cap = cap;
    }
    ring *r = calloc(1, sizeof *r);
    if (!r)
        luaL_error(L, "not enough memory");
    r->fd = -1;
    r->ev = &b->ev;
    b->pending = r;
    return r;
}

/* maps the ring's position pages read-only: consumer at offset 0, producer
 * one page after (the kernel's ringbuf layout) */
static void ring_map_positions(lua_State *L, ring *r) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, page, PROT_READ, MAP_SHARED, r->fd, 0);
    if (p == MAP_FAILED)
        luaebpf_raise(L, "ringbuf", errno, r->src.name, r->src.id, "cannot map the consumer "
                      "position");
    r->pos = p;
    p = mmap(NULL, page, PROT_READ, MAP_SHARED, r->fd, (off_t)page);
    if (p == MAP_FAILED)
        luaebpf_raise(L, "ringbuf", errno, r->src.name, r->src.id, "cannot map the producer "
                      "position");
    r->prod = p;
}

/* protected: self, map, opts -> adds the ring; b->pending holds it meanwhile */
static int ringbuf_add_body(lua_State *L) {
    ringbuf *b = lua_touserdata(L, 1);
    luaebpf_map *m = luaebpf_events_map(L, 2, BPF_MAP_TYPE_RINGBUF, "ringbuf");
    luaebpf_record_codec(L, 3, 2);      /* 4: the codec, kept in the user value */
    luaebpf_getuservalue(L, 1);
    lua_pushvalue(L, 4);
    lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    ring *r = ring_new(L, b);
    r->src.codec = lua_touserdata(L, 4);
    snprintf(r->src.name, sizeof r->src.name, "%s", m->name);
    r->src.id = m->id;
    r->size = m->max_entries;
    r->index = b->n + 1;
    char holder[64], who[64];
    snprintf(holder, sizeof holder, "%s: %p", LUAEBPF_RINGBUF, (void *)b);
    if (luaebpf_claim_take(&r->claim, m->id, holder, who, sizeof who) != 0) {
        lua_pushfstring(L, "the ring already has a consumer in this process (%s): a ring "
                        "buffer has one consumer position; close that one first", who);
        luaebpf_pusherror(L, "ringbuf", EBUSY, "invalid", m->name, m->id, lua_tostring(L, -1));
        return lua_error(L);
    }
    r->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3);
    if (r->fd < 0)
        return luaebpf_raise(L, "ringbuf", errno, m->name, m->id, "cannot duplicate the fd");
    ring_map_positions(L, r);
    int err = b->rb ? ring_buffer__add(b->rb, r->fd, ring_sample, r) : 0;
    if (!b->rb) {
        b->rb = ring_buffer__new(r->fd, ring_sample, r, NULL);
        err = b->rb ? 0 : -errno;
    }
    if (err)
        return luaebpf_raise(L, "ringbuf", -err, m->name, m->id, NULL);
    b->rings[b->n++] = r;
    b->pending = NULL;
    return 0;
}

/* adds the Map at map_idx with opts at opts_idx to the ringbuf at 1; on a
 * failure nothing of it stays, and the error is on top: returns the status */
static int ringbuf_add_ring(lua_State *L, int map_idx, int opts_idx) {
    lua_pushcfunction(L, ringbuf_add_body);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, map_idx);
    lua_pushvalue(L, opts_idx);
    int status = lua_pcall(L, 3, 0, 0);
    ringbuf *b = lua_touserdata(L, 1);
    if (status != 0) {
        ring_free(b->pending);
        b->pending = NULL;
    }
    return status;
}

static void check_ring_options(lua_State *L, int idx) {
    static const char *const known[] = {"record", "btf", "int64", NULL};
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    luaebpf_check_options(L, idx, "ringbuf options", known);
}

/* core.ringbuf(m | {m, ...} [, opts]) */
static int core_ringbuf(lua_State *L) {
    lua_settop(L, 2);
    int list = lua_istable(L, 1);
    if (!luaL_testudata(L, 1, LUAEBPF_MAP) && !(list && lua_rawlen(L, 1) > 0))
        return luaL_argerror(L, 1, lua_pushfstring(L, "a Map of type \"ringbuf\" or a list "
                             "of them expected, got %s", list ? "an empty table"
                             : luaL_typename(L, 1)));
    check_ring_options(L, 2);
    ringbuf *b = luaebpf_newuserdata(L, sizeof *b); /* born closed */
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, LUAEBPF_RINGBUF);
    lua_newtable(L);                                /* the codecs, 1..n */
    luaebpf_setuservalue(L, -2);
    b->ev.ops = &ringbuf_ops;                       /* from here on the GC releases */
    lua_insert(L, 1);                               /* self, maps, opts */
    int n = list ? (int)lua_rawlen(L, 2) : 1, status = 0;
    for (int i = 1; i <= n && status == 0; i++) {
        if (list)
            lua_rawgeti(L, 2, i);
        else
            lua_pushvalue(L, 2);
        status = ringbuf_add_ring(L, 4, 3);
        if (status == 0)
            lua_pop(L, 1);
    }
    if (status != 0) { /* nothing stays open */
        ringbuf_release(&b->ev);
        return lua_error(L);
    }
    b->ev.open = 1;
    lua_settop(L, 1);
    return 1;
}

/* rb:add(m [, opts]) -> rb */
static int ringbuf_add(lua_State *L) {
    luaebpf_events_check(L, 1, "add", 1); /* libbpf's arrays grow: not during a run */
    lua_settop(L, 3);
    luaebpf_check_map(L, 2, "add");
    check_ring_options(L, 3);
    if (ringbuf_add_ring(L, 2, 3) != 0)
        return lua_error(L);
    lua_settop(L, 1);
    return 1;
}

static uint64_t load_position(const void *page) {
    return __atomic_load_n((const unsigned long *)page, __ATOMIC_ACQUIRE);
}

/* rb:stats() -> { records, bytes, polls, rings = { { id, name, size, producer,
 * consumer, pending }, ... } } */
static int ringbuf_stats(lua_State *L) {
    ringbuf *b = (ringbuf *)luaebpf_events_check(L, 1, "stats", 0);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)b->ev.records);
    lua_setfield(L, -2, "records");
    lua_pushinteger(L, (lua_Integer)b->ev.bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, (lua_Integer)b->ev.polls);
    lua_setfield(L, -2, "polls");
    lua_createtable(L, b->n, 0);
    for (int i = 0; i < b->n; i++) {
        ring *r = b->rings[i]; /* the allocations below may close b: read them first */
        uint64_t cons = load_position(r->pos), prod = load_position(r->prod);
        uint32_t id = r->src.id, size = r->size;
        char name[16];
        memcpy(name, r->src.name, sizeof name);
        lua_createtable(L, 0, 6);
        lua_pushinteger(L, id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, size);
        lua_setfield(L, -2, "size");
        lua_pushinteger(L, (lua_Integer)prod);
        lua_setfield(L, -2, "producer");
        lua_pushinteger(L, (lua_Integer)cons);
        lua_setfield(L, -2, "consumer");
        lua_pushinteger(L, (lua_Integer)(prod - cons));
        lua_setfield(L, -2, "pending");
        lua_rawseti(L, -2, i + 1);
        if (!b->ev.open)
            break; /* a finalizer closed it meanwhile */
    }
    lua_setfield(L, -2, "rings");
    return 1;
}

static int ringbuf_tostring(lua_State *L) {
    ringbuf *b = luaL_checkudata(L, 1, LUAEBPF_RINGBUF);
    lua_pushfstring(L, "%s: %p (%d ring%s%s)", LUAEBPF_RINGBUF, (void *)b, b->n,
                    b->n == 1 ? "" : "s", b->ev.open ? "" : ", closed");
    return 1;
}

void luaebpf_ringbuf_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"poll", luaebpf_events_poll}, {"consume", luaebpf_events_consume},
        {"records", luaebpf_events_records}, {"fd", luaebpf_events_fd},
        {"stats", ringbuf_stats}, {"add", ringbuf_add}, {"close", luaebpf_events_close},
        {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", luaebpf_events_gc}, {"__close", luaebpf_events_close},
        {"__tostring", ringbuf_tostring}, {NULL, NULL}};
    luaebpf_class(L, LUAEBPF_RINGBUF, "Ringbuf", meta, methods, 0);
    lua_pushcfunction(L, core_ringbuf);
    lua_setfield(L, -2, "ringbuf");
}
