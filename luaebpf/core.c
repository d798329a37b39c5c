/* core.c: luaopen_luaebpf_core, the only exported symbol. Builds the module
 * table and lets each file add its functions and metatables; nothing else
 * lives here, so no file calls up into it. */
#include "luaebpf.h"

LUAEBPF_API int luaopen_luaebpf_core(lua_State *L);

LUAEBPF_API int luaopen_luaebpf_core(lua_State *L) {
    lua_newtable(L);
    luaebpf_err_open(L);
    luaebpf_codec_open(L);
    luaebpf_map_open(L);
    luaebpf_iter_open(L);
    luaebpf_mmap_open(L);
    luaebpf_object_open(L);
    luaebpf_ringbuf_open(L);
    luaebpf_perfbuf_open(L);
    luaebpf_system_open(L);
    luaebpf_ksym_open(L);
    luaebpf_elfsym_open(L);
    luaebpf_stack_open(L);
    luaebpf_holders_open(L);
    luaebpf_batch_open(L);
    luaebpf_inner_open(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "version");
    return 1;
}
