/* stack.c: the raw entries of a stack_trace map, for m:stack (whose frames
 * and symbols are lua/luaebpf/stack.lua's). A stack is read whatever codec
 * the map has: its bytes are the kernel's fixed layout, an array of
 * instruction pointers ending at the first zero, or with the map flag
 * stack_build_id an array of struct bpf_stack_build_id ending at the first
 * empty entry. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include "luaebpf.h"
#include "valgrind.h"

/* An address as frames carry it: an integer on 5.3+ (kernel addresses, from
 * 2^63 up, as negative integers with the same bits); on 5.1/LuaJIT a number
 * when exact, else a string "0xffffffff81000000", which ebpf.ksym and
 * ebpf.symbolize take back. */
static void push_address(lua_State *L, uint64_t a) {
    if (!luaebpf_push_exact(L, a, 0)) {
        char hex[24];
        snprintf(hex, sizeof hex, "0x%016llx", (unsigned long long)a);
        lua_pushstring(L, hex);
    }
}

/* core.stack_read(m, id): the raw stack with this id: an array of addresses,
 * or (stack_build_id) of { status = "valid", build_id = hex, offset = n } and
 * { status = "ip", ip = addr }; then whether it is a build-id stack. nil when
 * the map has no such id, nil, err when the kernel refuses. */
static int core_stack_read(lua_State *L) {
    luaebpf_map *m = luaebpf_check_map(L, 1, "stack");
    if (m->shape.type != BPF_MAP_TYPE_STACK_TRACE) {
        const char *got = luaebpf_type_name(m->shape.type);
        luaebpf_pusherror(L, "stack", EINVAL, "invalid", m->name, m->id, lua_pushfstring(L,
                          "a map of type \"stack_trace\" expected, got type \"%s\"",
                          got ? got : "?"));
        return lua_error(L);
    }
    lua_Integer id;
    if (!luaebpf_tointeger_in(L, 2, 0, UINT32_MAX, &id))
        luaL_argerror(L, 2, lua_pushfstring(L, "expected a stack id (an integer in "
                      "0..4294967295, as bpf_get_stackid returns), got %s",
                      lua_type(L, 2) == LUA_TNUMBER ? lua_pushfstring(L, "%f", lua_tonumber(L, 2))
                                                    : luaL_typename(L, 2)));
    uint32_t key = (uint32_t)id, size = m->shape.value_size;
    unsigned char *buf = lua_newuserdata(L, size ? size : 1); /* freed by the collector on a raise */
    if (m->fd < 0) /* a finalizer the allocation ran closed the map */
        luaebpf_check_map(L, 1, "stack");
    int r;
    LUAEBPF_RETRY(r, bpf_map_lookup_elem(m->fd, &key, buf), r == 0);
    if (r != 0) {
        int no = errno;
        if (no == ENOENT) {
            lua_pushnil(L);
            return 1;
        }
        return luaebpf_fail(L, "stack", no, m, luaebpf_elem_hint(m, "lookup", no, NULL));
    }
    VALGRIND_MAKE_MEM_DEFINED(buf, size);
    int build_id = (m->map_flags & BPF_F_STACK_BUILD_ID) != 0;
    lua_newtable(L);
    if (!build_id) {
        for (uint32_t i = 0; i + 8 <= size; i += 8) {
            uint64_t ip;
            memcpy(&ip, buf + i, 8);
            if (ip == 0) break;
            push_address(L, ip);
            lua_rawseti(L, -2, (lua_Integer)i / 8 + 1);
        }
    } else {
        lua_Integer n = 0;
        for (uint32_t i = 0; i + sizeof(struct bpf_stack_build_id) <= size;
             i += sizeof(struct bpf_stack_build_id)) {
            struct bpf_stack_build_id e;
            memcpy(&e, buf + i, sizeof e);
            if (e.status == BPF_STACK_BUILD_ID_EMPTY) break;
            lua_createtable(L, 0, 3);
            if (e.status == BPF_STACK_BUILD_ID_VALID) {
                char hex[2 * BPF_BUILD_ID_SIZE + 1];
                for (int j = 0; j < BPF_BUILD_ID_SIZE; j++)
                    snprintf(hex + 2 * j, 3, "%02x", e.build_id[j]);
                lua_pushliteral(L, "valid");
                lua_setfield(L, -2, "status");
                lua_pushstring(L, hex);
                lua_setfield(L, -2, "build_id");
                push_address(L, e.offset);
                lua_setfield(L, -2, "offset");
            } else {
                lua_pushliteral(L, "ip");
                lua_setfield(L, -2, "status");
                push_address(L, e.ip);
                lua_setfield(L, -2, "ip");
            }
            lua_rawseti(L, -2, ++n);
        }
    }
    lua_pushboolean(L, build_id);
    return 2;
}

void luaebpf_stack_open(lua_State *L) {
    lua_pushcfunction(L, core_stack_read);
    lua_setfield(L, -2, "stack_read");
}
