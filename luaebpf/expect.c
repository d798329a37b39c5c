/* expect.c: opts.expect, checked when a map is opened and before its codecs
 * are set, so a map of the wrong shape is reported as such (every differing
 * field named, in a stable order) instead of as a codec size error or as
 * garbage reads. */
#include <stdlib.h>
#include <string.h>
#include "luaebpf.h"

static const char *const expect_fields[] = {"btf_id", "flags", "key_size", "max_entries",
                                            "name", "percpu", "type", "value_size", NULL};

/* the flag lists at a and b hold the same names */
static int same_flags(lua_State *L, int a, int b) {
    size_t na = lua_rawlen(L, a), nb = lua_rawlen(L, b);
    for (int pass = 0; pass < 2; pass++) {
        int from = pass ? b : a, to = pass ? a : b;
        size_t nfrom = pass ? nb : na, nto = pass ? na : nb;
        for (size_t i = 1; i <= nfrom; i++) {
            int found = 0;
            lua_rawgeti(L, from, (lua_Integer)i);
            for (size_t j = 1; j <= nto && !found; j++) {
                lua_rawgeti(L, to, (lua_Integer)j);
                found = lua_rawequal(L, -1, -2);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            if (!found)
                return 0;
        }
    }
    return 1;
}

/* pushes the value at idx as a reader would write it: 4, "hash", {a, b} */
static void push_shown(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (lua_istable(L, idx)) {
        size_t n = lua_rawlen(L, idx);
        lua_pushliteral(L, "{");
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            lua_pushfstring(L, "%s%s", i > 1 ? ", " : "", luaL_tolstring(L, -1, NULL));
            lua_replace(L, -3);
            lua_pop(L, 1);
            lua_concat(L, 2);
        }
        lua_pushliteral(L, "}");
        lua_concat(L, 2);
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
    } else {
        luaL_tolstring(L, idx, NULL);
    }
}

/* Compares the table at expect_idx with the info table at info_idx. Pushes a
 * message naming every differing field and returns 1, or pushes nothing and
 * returns 0. Raises on an unknown or mistyped expect field. */
int luaebpf_expect_diff(lua_State *L, int expect_idx, int info_idx) {
    expect_idx = lua_absindex(L, expect_idx);
    info_idx = lua_absindex(L, info_idx);
    luaL_checktype(L, expect_idx, LUA_TTABLE);
    luaebpf_check_options(L, expect_idx, "opts.expect", expect_fields);
    int ndiff = 0;
    for (int i = 0; expect_fields[i]; i++) { /* in name order: a stable message */
        const char *f = expect_fields[i];
        lua_getfield(L, expect_idx, f); /* want */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_getfield(L, info_idx, f);   /* want, got */
        int same;
        if (strcmp(f, "flags") == 0) {
            if (!lua_istable(L, -2))
                luaL_error(L, "bad option 'expect.flags': a list of flag names expected, got %s",
                           luaL_typename(L, -2));
            same = same_flags(L, lua_gettop(L) - 1, lua_gettop(L));
        } else {
            same = lua_rawequal(L, -1, -2) ||
                   (lua_type(L, -1) == LUA_TNUMBER && lua_type(L, -2) == LUA_TNUMBER &&
                    lua_tonumber(L, -1) == lua_tonumber(L, -2));
        }
        if (same) {
            lua_pop(L, 2);
            continue;
        }
        /* [previous message,] want, got -> "[previous; ]f WANT expected, got GOT" */
        lua_pushfstring(L, "%s%s ", ndiff ? "; " : "", f);
        push_shown(L, -3);
        lua_pushliteral(L, " expected, got ");
        push_shown(L, -4);
        lua_concat(L, 4);
        lua_replace(L, -3);
        lua_pop(L, 1);
        if (ndiff++)
            lua_concat(L, 2);
    }
    return ndiff > 0;
}
