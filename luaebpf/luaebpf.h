/* luaebpf.h: the structs and prototypes the C files of luaebpf.core share.
 * Each file owns one concern (see the comment at its top); everything not
 * declared here is static to its file. */
#ifndef LUAEBPF_H
#define LUAEBPF_H

#include <stddef.h>
#include <stdint.h>
#include <linux/bpf.h>
#include "compat.h"

#define LUAEBPF_MAP   "luaebpf.Map"
#define LUAEBPF_CODEC "luaebpf.Codec"
#define LUAEBPF_ERROR "luaebpf.Error"
#define LUAEBPF_WALK   "luaebpf.Walk"
#define LUAEBPF_CURSOR "luaebpf.Cursor"
#define LUAEBPF_VIEW   "luaebpf.View"
#define LUAEBPF_OBJECT "luaebpf.Object"
#define LUAEBPF_LINK   "luaebpf.Link"

#define LUAEBPF_API __attribute__((visibility("default")))

/* Everything declared from here to the end of this header is internal to the
 * module, also when a build (LuaRocks' builtin one) lacks -fvisibility=hidden:
 * only luaopen_luaebpf_core, marked LUAEBPF_API, is exported. */
#pragma GCC visibility push(hidden)

/* ---- codecs: a codec is a compiled layout, a flat array of nodes ---- */
#define LUAEBPF_CODEC_MAX_DEPTH 32 /* levels of nesting a spec, and so a value, may have */
enum luaebpf_kind {
    LUAEBPF_RAW,    /* bytes as a string of exactly `size` */
    LUAEBPF_UINT,   /* host-order unsigned integer of 1, 2, 4 or 8 bytes */
    LUAEBPF_INT,    /* host-order signed integer */
    LUAEBPF_BE,     /* network-order unsigned integer of 2, 4 or 8 bytes */
    LUAEBPF_BOOL,
    LUAEBPF_F32,
    LUAEBPF_F64,
    LUAEBPF_CHAR,   /* char[size]: a string up to the first NUL */
    LUAEBPF_ARRAY,  /* `count` elements of node `first` */
    LUAEBPF_STRUCT, /* `count` field nodes starting at `first`; a union has all at offset 0 */
    LUAEBPF_ENUM,   /* an integer of `size` bytes; `count` enumerator nodes from `first` */
    LUAEBPF_BITFIELD /* bits [bit_offset, bit_offset + bit_size) of the bytes at offset */
};

typedef struct luaebpf_node {
    uint8_t kind;
    uint8_t is_signed;      /* ENUM, BITFIELD */
    uint8_t is_union;       /* STRUCT: a union (every member at offset 0) */
    uint8_t bit_offset, bit_size; /* BITFIELD */
    uint32_t size, align;
    uint32_t offset;        /* as a struct field: offset in the parent */
    uint32_t count, first;  /* ARRAY, STRUCT and ENUM children, by node index */
    int64_t value;          /* as an enumerator: its value */
    char *name;             /* field or enumerator name; NULL for an anonymous member,
                             * whose fields read and write as the parent's own */
    char *type_name;        /* from BTF: "struct inner", "enum color"; else NULL */
} luaebpf_node;

typedef struct luaebpf_codec {
    luaebpf_node *nodes;    /* nodes[0] is the root */
    uint32_t n, cap;
    int from_btf;           /* built from the map's BTF */
    int has_lock;           /* the value holds a struct bpf_spin_lock: use BPF_F_LOCK */
    int int64_string;       /* 5.1/LuaJIT: integers beyond 2^53 read as decimal strings */
    char desc[40];          /* short form for messages: "u32", "struct (24 bytes)" */
} luaebpf_codec;

/* layout.c: the Codec userdata and what names its nodes; calls no other file */
luaebpf_codec *luaebpf_codec_raw(lua_State *L, uint32_t size);
luaebpf_codec *luaebpf_codec_new(lua_State *L);                     /* empty, pushed */
uint32_t luaebpf_codec_reserve(lua_State *L, luaebpf_codec *c, uint32_t count);
void luaebpf_codec_describe(luaebpf_codec *c);
void luaebpf_push_layout(lua_State *L, const luaebpf_codec *c);
int luaebpf_scalar_set(luaebpf_node *n, const char *name);  /* "u32" -> kind, size; 0: none */
const char *luaebpf_kind_name(const luaebpf_node *n);       /* "u32", "struct", "bitfield" */
const char *luaebpf_push_shown(lua_State *L, int idx);      /* the string, NULs as \0 */
const char *luaebpf_tostring_nonul(lua_State *L, int idx);  /* NULL if it holds a NUL */
void luaebpf_layout_open(lua_State *L);                     /* the Codec metatable */

/* encode.c, decode.c: Lua values -> bytes -> Lua values */
void luaebpf_encode(lua_State *L, const luaebpf_codec *c, int idx, unsigned char *buf,
                    const char *what, int arg);
void luaebpf_decode(lua_State *L, const luaebpf_codec *c, const unsigned char *buf);
/* the same for a map entry's key (key_idx 0) or value (key_idx: the absolute index of
 * its decoded key): a value Lua cannot hold then names the entry */
void luaebpf_decode_entry(lua_State *L, const luaebpf_codec *c, const unsigned char *buf,
                          int key_idx);

/* codec.c: specs -> codecs, and core.sizeof/encode/decode */
luaebpf_codec *luaebpf_codec_compile(lua_State *L, int idx, const char *what);
void luaebpf_codec_open(lua_State *L);
/* opts.int64 ("number" or "string") of the options table at idx: 0 or 1; dflt when absent */
int luaebpf_opt_int64(lua_State *L, int idx, int dflt);

/* ---- map.c: the Map handle ---- */
/* what the last walk over a map did: m:last_read() */
typedef struct luaebpf_stats {
    uint64_t entries;   /* entries yielded */
    uint64_t batches;   /* batch syscalls that returned entries or the end */
    uint64_t grows;     /* ENOSPC: the batch grew and the read went on */
    uint64_t restarts;  /* get_next_key walks that came round to yielded keys again */
    uint64_t repeats;   /* keys skipped because they were already yielded */
    uint64_t vanished;  /* keys skipped because their lookup said ENOENT */
    uint32_t batch_size;
    int fallback;       /* 1: get_next_key was used */
} luaebpf_stats;

typedef struct luaebpf_map {
    int fd;                 /* -1 once closed: every method checks it first */
    int owns_fd;            /* 0 for a Map borrowed from an owner that closes it */
    uint32_t access;        /* BPF_F_RDONLY, BPF_F_WRONLY or 0 (read-write) */
    uint32_t id, type, key_size, value_size, max_entries, map_flags;
    int percpu, ncpus;
    size_t value_stride;    /* per-CPU: round_up(value_size, 8); else value_size */
    size_t value_bytes;     /* bytes one lookup writes: value_stride * ncpus if per-CPU */
    const luaebpf_codec *kc, *vc; /* kept alive by the user value table */
    char name[16];
    uint32_t btf_id, btf_key_type_id, btf_value_type_id;
    int btf_pending;        /* BTF codecs not loaded yet: 1 key, 2 value (see btf.c) */
    int int64_string;       /* opts.int64 = "string": given to every codec attached */
    luaebpf_stats last;     /* the latest walk, as it goes */
} luaebpf_map;

luaebpf_map *luaebpf_check_map(lua_State *L, int idx, const char *op);
luaebpf_map *luaebpf_map_from_fd(lua_State *L, int src_fd);
/* check_map, then load the BTF codecs if they are still pending */
luaebpf_map *luaebpf_check_map_data(lua_State *L, int idx, const char *op);
void luaebpf_push_info(lua_State *L, const struct bpf_map_info *info, uint32_t access);
void luaebpf_encode_key(lua_State *L, luaebpf_map *m, int idx, unsigned char *buf);
void luaebpf_encode_value(lua_State *L, luaebpf_map *m, int idx, unsigned char *buf);
void luaebpf_decode_value(lua_State *L, luaebpf_map *m, const unsigned char *buf);
/* decode_value for the entry whose decoded key is at the absolute index key_idx */
void luaebpf_decode_entry_value(lua_State *L, luaebpf_map *m, const unsigned char *buf,
                                int key_idx);
/* the detail for an element operation's (or a walk's) errno on this map, or NULL */
const char *luaebpf_elem_hint(const luaebpf_map *m, const char *op, int errnum,
                              const char *flag);
void luaebpf_map_open(lua_State *L);

/* ---- err.c: errno -> code/class, the error object ---- */
/* push an error object; map may be NULL, id 0 when unknown, detail may be NULL */
void luaebpf_pusherror(lua_State *L, const char *op, int errnum, const char *class_,
                       const char *map, uint32_t id, const char *detail);
void luaebpf_pusherror_about(lua_State *L, const char *op, int errnum, const char *about,
                             const char *name, const char *detail); /* "program", "object" */
int luaebpf_fail(lua_State *L, const char *op, int errnum, const luaebpf_map *m,
                 const char *detail);               /* pushes nil, err; returns 2 */
int luaebpf_raise(lua_State *L, const char *op, int errnum, const char *map, uint32_t id,
                  const char *detail);               /* raises the error object */
void luaebpf_err_open(lua_State *L);

/* ---- names.c: kernel constants <-> the names users write ---- */
const char *luaebpf_type_name(uint32_t type);
int luaebpf_type_number(const char *name);           /* -1 when unknown */
void luaebpf_push_flags(lua_State *L, uint32_t flags);
uint32_t luaebpf_check_flags(lua_State *L, int idx, const char *what);
int luaebpf_type_is_percpu(uint32_t type);
int luaebpf_type_is_array(uint32_t type);
int luaebpf_type_has_batch(uint32_t type);
int luaebpf_type_has_delete_batch(uint32_t type);

/* ---- btf.c: the "btf" codec, built from a map's BTF ---- */
struct btf;
luaebpf_codec *luaebpf_codec_from_btf(lua_State *L, const struct btf *btf, uint32_t type_id);
struct btf *luaebpf_btf_load(uint32_t btf_id);

/* ---- iter.c and system.c ---- */
void luaebpf_iter_open(lua_State *L);
void luaebpf_mmap_open(lua_State *L);
void luaebpf_object_open(lua_State *L);
void luaebpf_system_open(lua_State *L);
int luaebpf_ncpus(void);

/* expect.c: push a message naming each field of expect that differs from info */
int luaebpf_expect_diff(lua_State *L, int expect_idx, int info_idx);

/* A bpf() call interrupted by a signal (EINTR) or told to try again (EAGAIN)
 * runs again, at most LUAEBPF_RETRIES more times; then its error stands. The
 * kernel returns these only when the operation did not happen, so a retry
 * never applies a change twice. `ok` tests the result r. */
#define LUAEBPF_RETRIES 4
#define LUAEBPF_RETRY(r, call, ok)                                                      \
    do {                                                                                \
        int tries_ = 0;                                                                 \
        do {                                                                            \
            (r) = (call);                                                               \
        } while (!(ok) && (errno == EINTR || errno == EAGAIN) && tries_++ < LUAEBPF_RETRIES); \
    } while (0)

/* Buffers and codec nodes are malloc'd, unseen by the collector, so a loop
 * that opens and drops handles would let them pile up between cycles. Each
 * such allocation is announced as if Lua had made it (at least 1 KiB), so
 * the collector keeps pace and finalizers run in time. */
static inline void luaebpf_gc_hint(lua_State *L, size_t bytes) {
#ifdef LUA_GCISRUNNING
    if (!lua_gc(L, LUA_GCISRUNNING, 0))
        return; /* the host stopped the collector: leave it stopped */
#endif
    lua_gc(L, LUA_GCSTEP, (int)(bytes / 1024 + 1));
}

/* An unsigned value as decimal text, for "%s" in lua_pushfstring and
 * luaL_error: their %d takes an int (max_entries 4294967295 would print -1)
 * and LuaJIT has no %I. The buffer lives until the end of the caller's block. */
static inline const char *luaebpf_unsigned_text(char *buf, size_t size, uint64_t v) {
    snprintf(buf, size, "%llu", (unsigned long long)v);
    return buf;
}
#define LUAEBPF_UTEXT(v) luaebpf_unsigned_text((char[24]){0}, 24, (uint64_t)(v))

/* core.c: adds to the module on top a class: metatable `tname` holding `meta`,
 * whose __index is a table of `methods` also stored in the module as `field`;
 * with mt_upvalue, each method gets the metatable as upvalue 1 */
void luaebpf_class(lua_State *L, const char *tname, const char *field, const luaL_Reg *meta,
                   const luaL_Reg *methods, int mt_upvalue);

/* strict option tables: raise on a field not in `known` (NULL-terminated) */
void luaebpf_check_options(lua_State *L, int idx, const char *what, const char *const known[]);

#pragma GCC visibility pop

#endif
