/* events.c: what ring buffers (ringbuf.c) and perf buffers (perfbuf.c) share.
 * Owns the record codec (a codec spec, a BTF type of an Object, or raw
 * bytes), the delivery of one record from libbpf's sample callback to Lua,
 * the runs that drive libbpf (poll, consume, one step of a perf buffer's
 * records(): a ring buffer's step reads the ring itself, ops->step), the
 * consumer's lifecycle (busy during a run, close finished when it ends) and
 * the process-wide registry of consumed maps. ringbuf.c and perfbuf.c own
 * their libbpf objects and give this file their operations (ops).
 *
 * A run calls libbpf, which calls back per record. Two ways, by the ops:
 * - a perf buffer (ops->unwinds 0): each record is decoded and handed to fn
 *   in a protected call of its own, so a raise never crosses libbpf's frames
 *   (libbpf stores a perf buffer's read position once, after its loop). On
 *   an error the callback stops libbpf after that record (libbpf then stores
 *   the position past it), the error value stays on top of the stack, and
 *   the run raises it once libbpf has returned;
 * - a ring buffer (ops->unwinds 1): the source copies each record out of
 *   the ring and stores the consumer position past it before decoding it
 *   (ringbuf.c), so the whole libbpf call runs in one protected call and the
 *   source pushes the record between luaebpf_events_take and _hand_over;
 *   an error unwinds libbpf's frames (nothing of theirs to undo) to that
 *   protected call, and the run raises it. The outcome is the same: the
 *   record that raised and those before it consumed, the rest in the ring;
 *   per record it saves a protected call and a call of deliver_body.
 *
 * The consumer is busy from the start of a run to its end, and nothing in
 * between raises past the run (every raise is caught by a protected call,
 * and an error is explained only once busy is down): a consumer is never
 * left busy. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "luaebpf.h"
#include "valgrind.h"

/* ------------------------------------------------------------- registry */

static pthread_mutex_t claims_lock = PTHREAD_MUTEX_INITIALIZER;
static luaebpf_claim *claims;

/* 0, or -1 with the current holder of id in who */
static int claim_take(luaebpf_claim *c, uint32_t id, const char *holder, char *who,
                      size_t size) {
    int rc = 0;
    pthread_mutex_lock(&claims_lock);
    for (luaebpf_claim *p = claims; p; p = p->next)
        if (p->id == id) {
            snprintf(who, size, "%s", p->holder);
            rc = -1;
            break;
        }
    if (rc == 0) {
        c->id = id;
        snprintf(c->holder, sizeof c->holder, "%s", holder);
        c->next = claims;
        claims = c;
    }
    pthread_mutex_unlock(&claims_lock);
    return rc;
}

void luaebpf_claim_take(lua_State *L, luaebpf_claim *c, const luaebpf_map *m, const char *op,
                        const char *tname, const void *owner, const char *what,
                        const char *why) {
    char holder[64], who[64];
    snprintf(holder, sizeof holder, "%s: %p", tname, owner);
    if (claim_take(c, m->id, holder, who, sizeof who) == 0)
        return;
    lua_pushfstring(L, "the %s already has a consumer in this process (%s): %s; close that "
                    "one first", what, who, why);
    luaebpf_pusherror(L, op, EBUSY, "invalid", m->name, m->id, lua_tostring(L, -1));
    lua_error(L);
}

void luaebpf_claim_drop(luaebpf_claim *c) {
    if (!c->id)
        return;
    pthread_mutex_lock(&claims_lock);
    for (luaebpf_claim **p = &claims; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&claims_lock);
    c->id = 0;
}

/* ------------------------------------------------------------ codecs */

static int is_btf_name(const char *s) {
    return strncmp(s, "btf:", 4) == 0 || strncmp(s, "struct ", 7) == 0 ||
           strncmp(s, "union ", 6) == 0 || strncmp(s, "enum ", 5) == 0;
}

/* pushes the Object whose BTF names record types: opts.btf, else the owner
 * of the Map at map_idx (obj:map(...)), else nil */
static void push_btf_source(lua_State *L, int opts_idx, int map_idx) {
    if (lua_istable(L, opts_idx)) {
        lua_getfield(L, opts_idx, "btf");
        if (!lua_isnil(L, -1)) {
            if (!luaL_testudata(L, -1, LUAEBPF_OBJECT))
                luaL_error(L, "bad option 'btf': an Object (from ebpf.load) expected, got %s",
                           luaL_typename(L, -1));
            return;
        }
        lua_pop(L, 1);
    }
    luaebpf_getuservalue(L, map_idx);
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "owner");
    else
        lua_pushnil(L);
    lua_remove(L, -2);
}

luaebpf_codec *luaebpf_record_codec(lua_State *L, int opts_idx, int map_idx) {
    opts_idx = lua_absindex(L, opts_idx);
    map_idx = lua_absindex(L, map_idx);
    int int64 = luaebpf_opt_int64(L, opts_idx, 0);
    if (lua_istable(L, opts_idx))
        lua_getfield(L, opts_idx, "record");
    else
        lua_pushnil(L);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "raw");
    }
    int spec = lua_gettop(L);
    luaebpf_codec *c;
    if (lua_type(L, spec) == LUA_TSTRING && is_btf_name(lua_tostring(L, spec))) {
        const char *name = lua_tostring(L, spec);
        if (strncmp(name, "btf:", 4) == 0)
            name += 4;
        push_btf_source(L, opts_idx, map_idx);
        if (lua_isnil(L, -1))
            luaL_error(L, "bad option 'record': the BTF type '%s' needs opts.btf, an Object "
                       "(from ebpf.load) whose BTF holds it", name);
        c = luaebpf_object_codec(L, lua_gettop(L), name);
        lua_remove(L, -2); /* the Object */
    } else {
        c = luaebpf_codec_compile(L, spec, "record");
    }
    c->int64_string = int64;
    lua_remove(L, spec);
    return c;
}

/* ------------------------------------------------------------ delivery */

void luaebpf_events_push_record(lua_State *L, const luaebpf_source *src, const void *data,
                                size_t size) {
    const luaebpf_codec *c = src->codec;
    uint32_t want = c->nodes[0].size;
    VALGRIND_MAKE_MEM_DEFINED(data, size); /* written by the kernel */
    if (c->nodes[0].kind == LUAEBPF_RAW && want == 0) {
        lua_pushlstring(L, data, size);
        return;
    }
    if (size < want) {
        char detail[160];
        snprintf(detail, sizeof detail, "a record of %zu bytes is shorter than the record "
                 "codec %s (%u bytes)", size, c->desc, (unsigned)want);
        luaebpf_pusherror(L, "poll", EINVAL, "invalid", src->name, src->id, detail);
        lua_error(L);
    }
    luaebpf_decode(L, c, data); /* a longer record: its prefix (perf pads to 8 bytes) */
}

/* what the protected call of one record reads */
typedef struct delivery {
    luaebpf_events *ev;
    const luaebpf_source *src; /* NULL: a lost-sample report */
    const void *data;
    size_t size;
    lua_Integer tag;
} delivery;

/* protected: fn, delivery -> fn(rec, tag), or rec, tag when collecting */
static int deliver_body(lua_State *L) {
    delivery *d = lua_touserdata(L, 2);
    int collect = lua_isnil(L, 1);
    if (!collect)
        lua_pushvalue(L, 1);
    if (d->src) {
        luaebpf_events_push_record(L, d->src, d->data, d->size);
        lua_pushinteger(L, d->tag);
    } else { /* a lost-sample report: opts.lost(cpu, count) */
        lua_pushinteger(L, d->tag);
        lua_pushinteger(L, (lua_Integer)d->size);
    }
    if (collect)
        return 2;
    lua_call(L, 2, 0);
    return 0;
}

/* a yield inside the callback meets the C frames of libbpf and the run: say so */
static void explain_yield(lua_State *L, const char *kind) {
    if (lua_type(L, -1) != LUA_TSTRING || !strstr(lua_tostring(L, -1), "C-call boundary"))
        return;
    lua_pushfstring(L, "cannot yield inside a %s callback (it runs below C code: collect "
                    "records and yield after poll returns): %s", kind, lua_tostring(L, -1));
    lua_remove(L, -2);
}

/* after a record: stop libbpf when the limit is reached or a close is pending */
static int deliver_next(luaebpf_events *ev) {
    if (ev->close_pending || (ev->limit && ev->got >= ev->limit))
        ev->stopped = 1;
    return ev->stopped ? -1 : 0;
}

static int deliver(luaebpf_events *ev, delivery *d, int fn_idx) {
    lua_State *L = ev->L;
    if (ev->stopped)
        return -1;
    lua_pushvalue(L, ev->deliver_idx);
    lua_pushvalue(L, fn_idx);
    lua_pushlightuserdata(L, d);
    int collect = d->src && lua_isnil(L, fn_idx);
    if (lua_pcall(L, 2, collect ? 2 : 0, 0) != 0) {
        ev->failed = ev->stopped = 1; /* the error on top: run() raises it */
        return -1;
    }
    return deliver_next(ev);
}

int luaebpf_events_take(luaebpf_events *ev, size_t size) {
    if (ev->stopped)
        return -1;
    ev->records++; /* delivered, also when the decode or fn raises: it stays consumed */
    ev->bytes += size;
    ev->got++;
    if (!lua_isnil(ev->L, ev->fn_idx))
        lua_pushvalue(ev->L, ev->fn_idx);
    return 0;
}

int luaebpf_events_hand_over(luaebpf_events *ev, lua_Integer tag) {
    lua_State *L = ev->L; /* inside the run's protected call: raises unwind to it */
    lua_pushinteger(L, tag);
    if (!lua_isnil(L, ev->fn_idx))
        lua_call(L, 2, 0);
    return deliver_next(ev);
}

int luaebpf_events_deliver(luaebpf_events *ev, const luaebpf_source *src, const void *data,
                           size_t size, lua_Integer tag) {
    if (ev->stopped)
        return -1;
    ev->records++; /* delivered, also when fn raises: it stays consumed */
    ev->bytes += size;
    ev->got++;
    delivery d = {ev, src, data, size, tag};
    return deliver(ev, &d, ev->fn_idx);
}

int luaebpf_events_lost(luaebpf_events *ev, int cpu, uint64_t count) {
    delivery d = {ev, NULL, NULL, (size_t)count, cpu};
    if (!ev->lost_idx)
        return ev->stopped ? -1 : 0;
    return deliver(ev, &d, ev->lost_idx);
}

/* ------------------------------------------------------------ lifecycle */

static void events_release(luaebpf_events *ev) {
    ev->open = 0;
    ev->close_pending = 0;
    ev->ops->release(ev);
}

luaebpf_events *luaebpf_events_check(lua_State *L, int idx, const char *op, int idle) {
    luaebpf_events *ev = luaL_testudata(L, idx, LUAEBPF_RINGBUF);
    if (!ev)
        ev = luaL_checkudata(L, idx, LUAEBPF_PERFBUF);
    if (!ev->open || ev->close_pending)
        luaebpf_raise_closed(L, op, NULL, 0, "the consumer was closed");
    if (idle && ev->busy) {
        luaebpf_pusherror(L, op, EBUSY, "invalid", NULL, 0, "the consumer is delivering "
                          "records (called from its own callback?)");
        lua_error(L);
    }
    return ev;
}

int luaebpf_events_close(lua_State *L) { /* close, __close */
    luaebpf_events *ev = luaL_testudata(L, 1, LUAEBPF_RINGBUF);
    if (!ev)
        ev = luaL_checkudata(L, 1, LUAEBPF_PERFBUF);
    if (ev->busy)
        ev->close_pending = 1; /* the run uses libbpf's buffers: it closes when it ends */
    else if (ev->open || ev->ops)
        events_release(ev);
    return 0;
}

int luaebpf_events_gc(lua_State *L) { /* nothing runs on it once it is garbage */
    luaebpf_events *ev = lua_touserdata(L, 1);
    if (ev && ev->ops) {
        ev->busy = 0;
        events_release(ev);
    }
    return 0;
}

/* --------------------------------------------------------------- runs */

#define RUN_CONSUME (-2) /* a timeout meaning: consume, no wait */

/* libbpf's call of a run */
static int run_libbpf(luaebpf_events *ev, int timeout) {
    return timeout == RUN_CONSUME ? ev->ops->consume(ev) : ev->ops->poll(ev, timeout);
}

/* what the protected call of an unwinding run reads and answers */
typedef struct run_call {
    luaebpf_events *ev;
    int timeout;
    int rc, no;     /* libbpf's answer and errno */
} run_call;

/* protected: fn (nil: collect), lost, call -> what was collected, or nothing */
static int run_body(lua_State *L) {
    run_call *c = lua_touserdata(L, 3);
    luaebpf_events *ev = c->ev;
    ev->fn_idx = 1;
    ev->lost_idx = lua_isnil(L, 2) ? 0 : 2;
    c->rc = run_libbpf(ev, c->timeout);
    c->no = errno;
    return lua_gettop(L) - 3;
}

/* the run of a consumer whose records may raise through libbpf: run_body(fn,
 * lost, call), already at ev->deliver_idx, as one protected call; returns
 * libbpf's result (its errno in *no) */
static int run_unwinding(lua_State *L, luaebpf_events *ev, int timeout, int *no) {
    run_call c = {ev, timeout, 0, 0};
    lua_pushvalue(L, ev->fn_idx);
    if (ev->lost_idx)
        lua_pushvalue(L, ev->lost_idx);
    else
        lua_pushnil(L);
    lua_pushlightuserdata(L, &c);
    if (lua_pcall(L, 3, LUA_MULTRET, 0) != 0)
        ev->failed = ev->stopped = 1;
    *no = c.no;
    lua_pushnil(L); /* where run_body was: what it collected stays above deliver_idx */
    lua_insert(L, ev->deliver_idx);
    return c.rc;
}

void luaebpf_events_push_wait_error(lua_State *L, const char *op, int no) {
    luaebpf_pusherror(L, op, no ? no : EIO, no == EINTR ? "transient" : NULL, NULL, 0,
                      no == EINTR ? "interrupted by a signal" : NULL);
}

/* Drives libbpf once with the consumer busy: fn at fn_idx (0: collect each
 * record as results), opts.lost when the consumer has one, at most limit
 * records (0: all). Returns the number of results pushed: when collecting,
 * rec and tag, or nothing; else the count. Raises fn's error; a kernel
 * failure is nil, err. */
static int run(lua_State *L, int fn_idx, uint32_t limit, int timeout, const char *op) {
    const luaebpf_events_ops *ops = ((luaebpf_events *)lua_touserdata(L, 1))->ops;
    int lost_idx = 0;
    luaL_checkstack(L, 12, "running a consumer");
    if (ops->reports_lost) {
        luaebpf_getuservalue(L, 1);
        lua_getfield(L, -1, "lost");
        lost_idx = lua_isnil(L, -1) ? 0 : lua_gettop(L);
    }
    if (!fn_idx) {
        lua_pushnil(L); /* fn of a collecting run */
        fn_idx = lua_gettop(L);
    }
    /* may allocate (5.1) and run a finalizer, */
    lua_pushcfunction(L, ops->unwinds ? run_body : deliver_body);
    int deliver_idx = lua_gettop(L);
    luaebpf_events *ev = luaebpf_events_check(L, 1, op, 1); /* so check again */
    ev->L = L;
    ev->fn_idx = fn_idx;
    ev->lost_idx = lost_idx;
    ev->deliver_idx = deliver_idx;
    ev->failed = ev->stopped = 0;
    ev->limit = limit;
    ev->got = 0;
    ev->busy++; /* nothing between here and busy-- can raise */
    int rc, no;
    if (ev->ops->unwinds) {
        rc = run_unwinding(L, ev, timeout, &no);
    } else {
        rc = run_libbpf(ev, timeout);
        no = errno;
    }
    ev->busy--;
    ev->polls++;
    uint32_t got = ev->got;
    int failed = ev->failed, stopped = ev->stopped;
    if (ev->close_pending && ev->busy == 0)
        events_release(ev);
    if (failed) { /* fn's error, on top; busy is down: explaining it may raise */
        explain_yield(L, ops->kind);
        return lua_error(L);
    }
    if (rc < 0 && !stopped) {
        lua_pushnil(L);
        luaebpf_events_push_wait_error(L, op, no);
        return 2;
    }
    if (lua_isnil(L, fn_idx)) /* collecting: rec, tag above the run's slots, or nothing */
        return lua_gettop(L) - deliver_idx;
    lua_pushinteger(L, (lua_Integer)got);
    return 1;
}

static int check_timeout(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx))
        return -1;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return luaL_argerror(L, idx, lua_pushfstring(L, "a timeout in milliseconds expected, "
                             "got %s", luaL_typename(L, idx)));
    lua_Number t = lua_tonumber(L, idx);
    if (t != t) /* NaN: no comparison holds, and (int)NaN is undefined */
        return luaL_argerror(L, idx, "a timeout in milliseconds expected, got nan");
    if (t < 0)
        return -1;
    return t > 0x7fffffff ? 0x7fffffff : (int)t;
}

/* rb:poll(timeout_ms, fn) -> n | nil, err */
int luaebpf_events_poll(lua_State *L) {
    luaebpf_events *ev = luaebpf_events_check(L, 1, "poll", 1);
    int timeout = check_timeout(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    (void)ev;
    return run(L, 3, 0, timeout, "poll");
}

/* rb:consume(fn) -> n | nil, err */
int luaebpf_events_consume(lua_State *L) {
    luaebpf_events *ev = luaebpf_events_check(L, 1, "consume", 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    (void)ev;
    return run(L, 2, 0, RUN_CONSUME, "consume");
}

/* one step of records(): upvalues self, timeout. What is there now, one
 * record per step (libbpf stops after it: a `break` leaves the rest in the
 * ring); when nothing is, one wait of timeout, then the end. */
static int records_step(lua_State *L) {
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    int timeout = (int)lua_tointeger(L, lua_upvalueindex(2));
    int n = run(L, 0, 1, RUN_CONSUME, "records"); /* run checks self */
    if (n == 0 && timeout != 0) {
        lua_settop(L, 1);
        n = run(L, 0, 1, timeout, "records"); /* as opts.lost may have closed it */
    }
    if (n == 2 && lua_isnil(L, -2)) /* nil, err from the kernel: an iterator raises */
        return lua_error(L);
    return n;
}

/* for rec, tag in rb:records([timeout_ms]) do ... end */
int luaebpf_events_records(lua_State *L) {
    luaebpf_events *ev = luaebpf_events_check(L, 1, "records", 0);
    int timeout = lua_isnoneornil(L, 2) ? 0 : check_timeout(L, 2);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, timeout);
    lua_pushcclosure(L, ev->ops->step ? ev->ops->step : records_step, 2);
    return 1;
}

/* rb:fd(): the epoll fd, readable when a buffer has data */
int luaebpf_events_fd(lua_State *L) {
    luaebpf_events *ev = luaebpf_events_check(L, 1, "fd", 0);
    lua_pushinteger(L, ev->ops->epoll_fd(ev));
    return 1;
}

luaebpf_map *luaebpf_events_map(lua_State *L, int idx, uint32_t type, const char *op) {
    luaebpf_map *m = luaebpf_check_map(L, idx, op);
    const char *want = luaebpf_type_name(type);
    if (m->shape.type != type) {
        const char *got = luaebpf_type_name(m->shape.type);
        luaL_argerror(L, idx, lua_pushfstring(L, "a Map of type \"%s\" expected, got map "
                      "'%s' of type \"%s\"", want, m->name, got ? got : "?"));
    }
    if (m->access != 0)
        luaebpf_raise(L, op, EPERM, m->name, m->id, type == BPF_MAP_TYPE_RINGBUF
                      ? "a consumer writes the ring's consumer position: open the map with "
                        "access = \"rw\""
                      : "a consumer installs its buffers in the map: open it with "
                        "access = \"rw\"");
    return m;
}
