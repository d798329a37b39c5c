/* compat.h: every difference between the Lua C APIs luaebpf builds against
 * (5.4, 5.3, 5.1/LuaJIT 2.1) lives here and nowhere else. The sources are
 * written against the 5.3 API; this header fills in what older VMs lack. */
#ifndef LUAEBPF_COMPAT_H
#define LUAEBPF_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 and LuaJIT 2.1 */
#define LUAEBPF_HAS_INTEGERS 0
#ifndef LUA_JITLIBNAME
/* vanilla 5.1 lacks what LuaJIT 2.1 added from 5.2 */
/* 5.2's luaL_setfuncs: each function gets the nup values below the table */
static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name; l++) {
        for (int i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
static inline void *luaL_testudata(lua_State *L, int i, const char *tname) {
    void *p = lua_touserdata(L, i);
    if (p == NULL || !lua_getmetatable(L, i))
        return NULL;
    luaL_getmetatable(L, tname);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}
#define luaL_setmetatable(L, tname) (luaL_getmetatable(L, tname), lua_setmetatable(L, -2))
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define lua_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
/* user values are environment tables on 5.1 */
#define luaebpf_setuservalue(L, i) lua_setfenv((L), (i))
#define luaebpf_getuservalue(L, i) lua_getfenv((L), (i))
/* 5.2's luaL_tolstring: pushes the value as a string. Integral numbers show
 * every digit ("%.14g" would round 2^53 + 2 to 9.007199254741e+15). */
static inline const char *luaL_tolstring(lua_State *L, int i, size_t *len) {
    i = lua_absindex(L, i);
    if (luaL_callmeta(L, i, "__tostring")) {
        if (!lua_isstring(L, -1))
            luaL_error(L, "'__tostring' must return a string");
        return lua_tolstring(L, -1, len);
    }
    switch (lua_type(L, i)) {
    case LUA_TNUMBER: {
        lua_Number n = lua_tonumber(L, i);
        if (n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
            n == (lua_Number)(long long)n) {
            char s[24];
            snprintf(s, sizeof s, "%lld", (long long)n);
            lua_pushstring(L, s);
        } else {
            lua_pushvalue(L, i);
        }
        break;
    }
    case LUA_TSTRING:
        lua_pushvalue(L, i);
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
        break;
    case LUA_TNIL:
        lua_pushliteral(L, "nil");
        break;
    default:
        lua_pushfstring(L, "%s: %p", luaL_typename(L, i), lua_topointer(L, i));
    }
    return lua_tolstring(L, -1, len);
}
#else
#define LUAEBPF_HAS_INTEGERS 1
#define luaebpf_setuservalue(L, i) lua_setuservalue((L), (i))
#define luaebpf_getuservalue(L, i) ((void)lua_getuservalue((L), (i)))
#endif

/* The one rule for an integer a caller gives (an id, a size, a count, an
 * index, on every Lua): an integer, or a float with an integral value (what
 * JSON decoders give), in [lo, hi]; lo and hi lie within +-2^53, where every
 * float is exact. A string is not a number here. Returns 1 with *v set, or
 * 0 with *v = 0. */
static inline int luaebpf_tointeger_in(lua_State *L, int i, lua_Integer lo, lua_Integer hi,
                                       lua_Integer *v) {
    *v = 0;
    if (lua_type(L, i) != LUA_TNUMBER)
        return 0;
#if LUAEBPF_HAS_INTEGERS
    if (lua_isinteger(L, i)) {
        lua_Integer n = lua_tointeger(L, i);
        if (n < lo || n > hi)
            return 0;
        *v = n;
        return 1;
    }
#endif
    lua_Number d = lua_tonumber(L, i);
    /* the range first: NaN fails it, and the cast of an out-of-range float is undefined */
    if (!(d >= (lua_Number)lo && d <= (lua_Number)hi) || d != (lua_Number)(lua_Integer)d)
        return 0;
    *v = (lua_Integer)d;
    return 1;
}

#if LUA_VERSION_NUM >= 504
#define luaebpf_newuserdata(L, size) lua_newuserdatauv((L), (size), 1)
/* a generic for takes a fourth value, closed when the loop ends (break too) */
#define LUAEBPF_FOR_CLOSES 1
#else
#define luaebpf_newuserdata(L, size) lua_newuserdata((L), (size))
#define LUAEBPF_FOR_CLOSES 0
#endif

/* whether the collector runs (5.1 cannot tell: it says yes) */
#ifdef LUA_GCISRUNNING
#define luaebpf_gc_running(L) lua_gc((L), LUA_GCISRUNNING, 0)
#else
#define luaebpf_gc_running(L) 1
#endif

/* ---- integers of codecs (encode.c, decode.c) ----
 * The one rule for 64-bit integers a Lua number may not hold.
 * 5.3/5.4: lua_Integer is 64 bits, so every value is exact: a u64 from 2^63
 * up reads as the negative integer with the same bits, and a negative
 * integer writes its two's complement.
 * 5.1/LuaJIT: numbers are doubles, exact in -2^53..2^53. A value in that
 * range reads as a number; one beyond it never reads as a nearby number (the
 * decoder gives a decimal string or raises), and a field wider than 2^53
 * also takes a decimal string when written. */
#include <stdint.h>
#if LUAEBPF_HAS_INTEGERS
#define LUAEBPF_INT64_FORM "an integer" /* what a 64-bit field takes, for messages */
#else
#define LUAEBPF_INT64_FORM "an integer in -2^53..2^53 or a decimal string"
#endif
/* 1 where a field wider than 2^53 takes a decimal string: 5.1 */
#define LUAEBPF_INT64_STRINGS (!LUAEBPF_HAS_INTEGERS)

/* 1 with *v when the value at i is a Lua integer: the encoder's fast path.
 * 5.1 has no integer subtype: always 0, and the general path decides. */
static inline int luaebpf_tointeger_fast(lua_State *L, int i, int64_t *v) {
#if LUAEBPF_HAS_INTEGERS
    if (!lua_isinteger(L, i))
        return 0;
    *v = (int64_t)lua_tointeger(L, i);
    return 1;
#else
    (void)L, (void)i, (void)v;
    return 0;
#endif
}

/* the number at i (a LUA_TNUMBER) as an exact integer into *v; 0 when it has
 * none: a fraction, out of range, or (5.1) beyond 2^53, where doubles skip */
static inline int luaebpf_number_exact(lua_State *L, int i, int64_t *v) {
#if LUAEBPF_HAS_INTEGERS
    int isnum = 0;
    *v = (int64_t)lua_tointegerx(L, i, &isnum);
    return isnum;
#else
    lua_Number d = lua_tonumber(L, i);
    /* the range first: NaN fails it, and the cast of an out-of-range float is undefined */
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (lua_Number)(int64_t)d)
        return 0;
    *v = (int64_t)d;
    return 1;
#endif
}

/* pushes the integer with these 64 bits, read as signed or not; 0 (nothing
 * pushed) when a Lua number cannot hold it exactly, which only 5.1 says */
static inline int luaebpf_push_exact(lua_State *L, uint64_t bits, int is_signed) {
#if LUAEBPF_HAS_INTEGERS
    (void)is_signed;
    lua_pushinteger(L, (lua_Integer)bits);
    return 1;
#else
    int neg = is_signed && (int64_t)bits < 0;
    uint64_t mag = neg ? 0 - bits : bits;
    if (mag > ((uint64_t)1 << 53))
        return 0;
    lua_pushnumber(L, neg ? -(lua_Number)mag : (lua_Number)mag);
    return 1;
#endif
}

#endif
