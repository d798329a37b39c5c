/* ringbuf.c: the Ringbuf consumer, over libbpf's ring_buffer. ebpf.ringbuf(m
 * or {m1, m2, ...} [, opts]) and rb:add(m [, opts]) each add a ring with its
 * own record codec; rb:stats() reads each ring's fill level from views of
 * its consumer and producer pages (libbpf 1.1 exposes neither), and each
 * record is consumed through the first as soon as it is copied out of the
 * ring, before it is decoded (ring_take). rb:records() needs no libbpf: each
 * step reads the next record from the ring's data area, which this file
 * maps too (ringbuf_step), and waits on libbpf's epoll fd when there is
 * none. Delivery, runs and the lifecycle are events.c's.
 *
 * Each ring holds a dup of the map's fd (libbpf keeps the fd it is given, and
 * the Map may be closed first) and a claim on the map's id: a ring buffer has
 * one consumer position, so a second consumer in this process is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "luaebpf.h"
#include "valgrind.h"

typedef struct ring {
    luaebpf_source src;     /* the record codec, the map's name and id */
    luaebpf_events *ev;
    luaebpf_claim claim;
    int fd;                 /* our dup of the map's fd; -1 when none */
    uint32_t size;          /* max_entries: the data area's bytes */
    int index;              /* 1-based, in the order added: the i given to fn */
    void *pos;              /* the consumer page, read-write: records are consumed through it */
    void *prod;             /* the producer page, read-only */
    const unsigned char *data; /* the data area, read-only, mapped twice in a row (as the
                                * kernel lays it out): records() reads records from it */
} ring;

typedef struct ringbuf {
    luaebpf_events ev;      /* first: events.c sees a ringbuf as this */
    struct ring_buffer *rb; /* NULL until the first ring */
    ring **rings;
    int n, cap;
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
    if (r->data)
        munmap((void *)r->data, 2 * (size_t)r->size);
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

/* ------------------------------------------------------ taking a record
 *
 * A record is copied out of the ring, then consumed (the consumer position
 * stored past it), then decoded from the copy: a decode allocates, so
 * finalizers may run in it and do anything (close the consumer, read its
 * stats, trigger more events); once the position moves the producer may
 * reuse the bytes, so nothing decodes from the ring itself. A decode that
 * raises leaves nothing behind: the record is consumed, the copy is on the C
 * stack or in a userdata the collector frees. A "raw" record is its own copy:
 * lua_pushlstring reads all its bytes before any finalizer can run. */

/* records up to this size are copied on the C stack; longer ones into a userdata */
#define RECORD_STACK_COPY 512

/* does src's codec take the record as a string of all its bytes ("raw")? */
static int codec_is_string(const luaebpf_source *src) {
    return src->codec->nodes[0].kind == LUAEBPF_RAW && src->codec->nodes[0].size == 0;
}

/* stores r's consumer position: the bytes before next are the producer's again */
static void ring_consume(ring *r, unsigned long next) {
    __atomic_store_n((unsigned long *)r->pos, next, __ATOMIC_RELEASE);
}

/* Pushes the record of len bytes at data (in the ring, readable until the
 * position moves), copied to buf when it needs a copy (len <= buf's size),
 * and consumes it (ring_consume(r, next)). Returns what to decode from: the
 * string's bytes for "raw" (pushed, nothing more to do: NULL), else buf. */
static const unsigned char *ring_take(lua_State *L, ring *r, const luaebpf_source *src,
                                      const unsigned char *data, size_t len,
                                      unsigned long next, unsigned char *buf) {
    VALGRIND_MAKE_MEM_DEFINED(data, len); /* written by the kernel */
    if (codec_is_string(src)) {
        lua_pushlstring(L, (const char *)data, len);
        ring_consume(r, next);
        return NULL;
    }
    if (len < src->codec->nodes[0].size) { /* raises, naming both sizes, reading nothing */
        ring_consume(r, next);
        luaebpf_events_push_record(L, src, data, len);
    }
    memcpy(buf, data, len);
    ring_consume(r, next);
    return buf;
}

/* ------------------------------------------------- records(): no libbpf */

#define RECORD_LEN(hdr) ((hdr) & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT))

/* The header of r's next record (its length word in *hdr, the position past
 * it in *next), or NULL when none is ready; discarded records on the way are
 * consumed. As libbpf's ringbuf_process_ring: the producer position with
 * acquire, each header with acquire (the kernel clears BUSY once the
 * record is written), a record taking round_up(len + 8, 8) bytes. */
static const unsigned char *ring_peek(ring *r, uint32_t *hdr, unsigned long *next) {
    unsigned long *pos = r->pos;
    unsigned long cons = __atomic_load_n(pos, __ATOMIC_ACQUIRE);
    unsigned long prod = __atomic_load_n((const unsigned long *)r->prod, __ATOMIC_ACQUIRE);
    unsigned long mask = (unsigned long)r->size - 1;
    while (cons < prod) {
        const unsigned char *h = r->data + (cons & mask);
        uint32_t len = __atomic_load_n((const uint32_t *)h, __ATOMIC_ACQUIRE);
        if (len & BPF_RINGBUF_BUSY_BIT)
            return NULL; /* reserved, not yet submitted: what follows waits for it */
        if (RECORD_LEN(len) > r->size - BPF_RINGBUF_HDR_SZ)
            return NULL; /* not a length the kernel writes (a consumer position moved by
                          * another process?): never read past the mapping */
        cons += (RECORD_LEN(len) + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
        if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
            *hdr = len;
            *next = cons;
            return h;
        }
        __atomic_store_n(pos, cons, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* the first ring in order with a record ready, and that record, or NULL */
static ring *ringbuf_peek(ringbuf *b, const unsigned char **h, uint32_t *hdr,
                          unsigned long *next) {
    for (int i = 0; i < b->n; i++)
        if ((*h = ring_peek(b->rings[i], hdr, next)))
            return b->rings[i];
    return NULL;
}

/* raises unless b is open and idle (a finalizer may close it, or start a run) */
static void ringbuf_check_step(lua_State *L, ringbuf *b) {
    if (!b->ev.open || b->ev.close_pending || b->ev.busy)
        luaebpf_events_check(L, lua_upvalueindex(1), "records", 1); /* raises */
}

/* One step of rb:records(): upvalues self, timeout. Reads the next record
 * straight from the rings' data areas, mapped by ring_map: one record per
 * step, consumed as it is handed out, so a `break` leaves the rest. When no
 * ring has one, waits up to timeout on libbpf's epoll fd (ring_buffer__poll
 * would consume them all), looks once more, and ends the loop. A record
 * longer than the stack copy needs a userdata first, whose allocation may run
 * finalizers: the step then looks again, from the start. */
static int ringbuf_step(lua_State *L) {
    ringbuf *b = lua_touserdata(L, lua_upvalueindex(1)); /* records() checked its class */
    unsigned char small[RECORD_STACK_COPY], *buf = small;
    size_t cap = sizeof small;
    const unsigned char *h;
    uint32_t hdr;
    unsigned long next;
    ring *r;
    int looks = 0;
    for (;;) {
        ringbuf_check_step(L, b);
        r = ringbuf_peek(b, &h, &hdr, &next);
        if (looks++ == 0)
            b->ev.polls++;
        if (!r) {
            int timeout = (int)lua_tointeger(L, lua_upvalueindex(2));
            if (looks > 1 || timeout == 0)
                return 0;
            struct epoll_event e;
            if (epoll_wait(ring_buffer__epoll_fd(b->rb), &e, 1, timeout) < 0) {
                luaebpf_events_push_wait_error(L, "records", errno);
                return lua_error(L);
            }
            b->ev.polls++;
            continue;
        }
        if (RECORD_LEN(hdr) <= cap || codec_is_string(&r->src))
            break;
        if (buf != small)
            lua_pop(L, 1); /* a copy too small for what a finalizer let through */
        cap = RECORD_LEN(hdr);
        buf = luaebpf_newuserdata(L, cap); /* may run finalizers: look again */
    }
    luaebpf_source src = r->src; /* r goes when a finalizer closes b in the decode */
    lua_Integer index = r->index;
    uint32_t len = RECORD_LEN(hdr);
    b->ev.records++; /* delivered, also when the decode raises: it is consumed */
    b->ev.bytes += len;
    const unsigned char *copy = ring_take(L, r, &src, h + BPF_RINGBUF_HDR_SZ, len, next, buf);
    if (copy)
        luaebpf_events_push_record(L, &src, copy, len);
    lua_pushinteger(L, index);
    return 2; /* a userdata copy below them is garbage now */
}

static const luaebpf_events_ops ringbuf_ops = {"ringbuf", ringbuf_poll_rings,
                                               ringbuf_consume_rings, ringbuf_epoll_fd,
                                               ringbuf_release, 1, 0, ringbuf_step};

/* libbpf's sample callback: ctx is the ring; a negative answer stops libbpf
 * with the consumer position past this record.
 *
 * libbpf 1.1 stores the consumer position after each record, so the page
 * holds this record's start now, and stores it past this one when the
 * callback returns, whatever it answers. events.c runs a ring buffer in one
 * protected call, not one per record, so a raise may leave libbpf's frames
 * at once: the record is taken (ring_take: copied, then consumed) before it
 * is decoded and fn sees it, so this record and those before it are consumed
 * whatever raises, the rest stay in the ring, and the producer never reuses
 * bytes that are still being decoded. (Finalizers cannot close the rings
 * under libbpf here: the consumer is busy, a close waits for the run's end.) */
static int ring_sample(void *ctx, void *data, size_t size) {
    ring *r = ctx;
    luaebpf_events *ev = r->ev;
    lua_State *L = ev->L;
    int base = lua_gettop(L);
    unsigned char small[RECORD_STACK_COPY], *buf = small;
    if (size > sizeof small && !codec_is_string(&r->src)) /* may raise: nothing consumed */
        buf = luaebpf_newuserdata(L, size);
    if (luaebpf_events_take(ev, size) != 0) {
        lua_settop(L, base);
        return -1; /* libbpf is told to stop, nothing delivered */
    }
    unsigned long next = __atomic_load_n((unsigned long *)r->pos, __ATOMIC_RELAXED) +
                         ((size + BPF_RINGBUF_HDR_SZ + 7) & ~(size_t)7);
    const unsigned char *copy = ring_take(L, r, &r->src, data, size, next, buf);
    if (copy)
        luaebpf_events_push_record(L, &r->src, copy, size);
    int rc = luaebpf_events_hand_over(ev, r->index);
    if (buf != small)
        lua_remove(L, base + 1); /* the copy, below what a collecting run keeps */
    return rc;
}

/* maps the ring as the kernel lays it out: the consumer's position page at
 * offset 0 read-write (ring_sample and records() store it), the producer's
 * one page after read-only, then the data area read-only, mapped twice in a
 * row so that a record wrapping round its end reads as one piece */
static void ring_map(lua_State *L, ring *r) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (p == MAP_FAILED)
        luaebpf_raise(L, "ringbuf", errno, r->src.name, r->src.id, "cannot map the consumer "
                      "position");
    r->pos = p;
    p = mmap(NULL, page, PROT_READ, MAP_SHARED, r->fd, (off_t)page);
    if (p == MAP_FAILED)
        luaebpf_raise(L, "ringbuf", errno, r->src.name, r->src.id, "cannot map the producer "
                      "position");
    r->prod = p;
    p = mmap(NULL, 2 * (size_t)r->size, PROT_READ, MAP_SHARED, r->fd, (off_t)(2 * page));
    if (p == MAP_FAILED)
        luaebpf_raise(L, "ringbuf", errno, r->src.name, r->src.id, "cannot map the data area");
    r->data = p;
}

/* room for one more ring in b->rings */
static void ringbuf_grow(lua_State *L, ringbuf *b) {
    if (b->n < b->cap)
        return;
    int cap = b->cap ? b->cap * 2 : 2;
    ring **p = realloc(b->rings, (size_t)cap * sizeof *p);
    if (!p)
        luaL_error(L, "not enough memory");
    b->rings = p;
    b->cap = cap;
}

/* protected: self, map, opts, r -> sets the ring r up and adds it to self.
 * What allocates in Lua (and so may run a finalizer that adds a ring to
 * self, or closes it) comes first; from ringbuf_grow on nothing does, so
 * the room made is still there when r is linked, and r is linked last: a
 * raise leaves it unlinked, the caller's to free. */
static int ringbuf_add_body(lua_State *L) {
    ringbuf *b = lua_touserdata(L, 1);
    ring *r = lua_touserdata(L, 4);
    luaebpf_map *m = luaebpf_events_map(L, 2, BPF_MAP_TYPE_RINGBUF, "ringbuf");
    luaebpf_record_codec(L, 3, 2);      /* 5: the codec, kept in the user value */
    luaebpf_getuservalue(L, 1);
    lua_pushvalue(L, 5);
    lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    r->src.codec = lua_touserdata(L, 5);
    snprintf(r->src.name, sizeof r->src.name, "%s", m->name);
    r->src.id = m->id;
    r->size = m->max_entries;
    luaebpf_claim_take(L, &r->claim, m, "ringbuf", LUAEBPF_RINGBUF, b, "ring",
                       "a ring buffer has one consumer position");
    r->fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3);
    if (r->fd < 0)
        return luaebpf_raise(L, "ringbuf", errno, m->name, m->id, "cannot duplicate the fd");
    ring_map(L, r);
    ringbuf_grow(L, b);
    int err = b->rb ? ring_buffer__add(b->rb, r->fd, ring_sample, r) : 0;
    if (!b->rb) {
        b->rb = ring_buffer__new(r->fd, ring_sample, r, NULL);
        err = b->rb ? 0 : -errno;
    }
    if (err)
        return luaebpf_raise(L, "ringbuf", -err, m->name, m->id, NULL);
    r->index = b->n + 1;
    b->rings[b->n++] = r;
    return 0;
}

/* adds the Map at map_idx with opts at opts_idx to the ringbuf at 1; on a
 * failure nothing of it stays, and the error is on top: returns the status */
static int ringbuf_add_ring(lua_State *L, int map_idx, int opts_idx) {
    ringbuf *b = lua_touserdata(L, 1);
    lua_pushcfunction(L, ringbuf_add_body); /* allocates in 5.1: before r exists */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, map_idx);
    lua_pushvalue(L, opts_idx);
    ring *r = calloc(1, sizeof *r);
    if (!r) {
        lua_pop(L, 4);
        lua_pushliteral(L, "not enough memory");
        return LUA_ERRMEM;
    }
    r->fd = -1;
    r->ev = &b->ev;
    lua_pushlightuserdata(L, r);
    int status = lua_pcall(L, 4, 0, 0);
    if (status != 0)
        ring_free(r); /* not linked: the body links it last */
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
    ringbuf *b = lua_touserdata(L, 1);
    if (!b->ev.open) { /* a finalizer closed it while the ring was set up: drop that too */
        ringbuf_release(&b->ev);
        return luaebpf_raise_closed(L, "add", NULL, 0, "the consumer was closed");
    }
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
