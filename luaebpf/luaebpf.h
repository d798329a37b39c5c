/* luaebpf.h: the structs and prototypes the C files of luaebpf.core share.
 * Each file owns one concern (see the comment at its top); everything not
 * declared here is static to its file. */
#ifndef LUAEBPF_H
#define LUAEBPF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h> /* libbpf_print_fn_t (print.c) */
#include "compat.h"

#define LUAEBPF_MAP   "luaebpf.Map"
#define LUAEBPF_CODEC "luaebpf.Codec"
#define LUAEBPF_ERROR "luaebpf.Error"
#define LUAEBPF_WALK   "luaebpf.Walk"
#define LUAEBPF_CURSOR "luaebpf.Cursor"
#define LUAEBPF_VIEW   "luaebpf.View"
#define LUAEBPF_OBJECT "luaebpf.Object"
#define LUAEBPF_LINK   "luaebpf.Link"
#define LUAEBPF_PROGRAM "luaebpf.Program"
#define LUAEBPF_RINGBUF "luaebpf.Ringbuf"
#define LUAEBPF_PERFBUF "luaebpf.Perfbuf"

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
    LUAEBPF_BITFIELD, /* bits [bit_offset, bit_offset + bit_size) of the bytes at offset */
    LUAEBPF_DECODED /* `size` bytes that mean something else (`decoder`): decoders.c */
};

/* what a LUAEBPF_DECODED node's bytes mean (README: Decoders) */
enum luaebpf_decoder {
    LUAEBPF_DEC_IPV4 = 1, /* 4 bytes, network order */
    LUAEBPF_DEC_IPV4_HOST, /* a host-order u32 */
    LUAEBPF_DEC_IPV6,     /* 16 bytes */
    LUAEBPF_DEC_MAC,      /* 6 bytes */
    LUAEBPF_DEC_CIDR,     /* an LPM trie key: host-order u32 prefix length, then 4 or 16 bytes */
    LUAEBPF_DEC_KSYM,     /* a u64 kernel address */
    LUAEBPF_DEC_SYSCALL,  /* a u32 or u64 syscall number of this architecture */
    LUAEBPF_DEC_ERRNO,    /* an i32 or i64 errno, negative too */
    LUAEBPF_DEC_IFINDEX,  /* a u32 interface index */
    LUAEBPF_DEC_CGROUP,   /* a u64 cgroup id: the inode number of a cgroup2 directory */
    LUAEBPF_DEC_BOOT_NS   /* u64 nanoseconds since boot (CLOCK_BOOTTIME) */
};

typedef struct luaebpf_node {
    uint8_t kind;
    uint8_t is_signed;      /* ENUM, BITFIELD */
    uint8_t is_union;       /* STRUCT: a union (every member at offset 0) */
    uint8_t bit_offset, bit_size; /* BITFIELD */
    uint8_t decoder;        /* DECODED: an enum luaebpf_decoder */
    uint8_t flex;           /* DECODED: may take the other width it has (syscall, errno:
                             * 4 or 8; cidr: 8 or 20) from the key or value it is */
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
/* makes n the decoder called name ("ipv4", "syscall:u64"...); 0 when none is */
int luaebpf_decoder_set(luaebpf_node *n, const char *name);
/* a flex decoder n takes size when it is one of its widths: 1, else 0 (n unchanged) */
int luaebpf_decoder_resize(luaebpf_node *n, uint32_t size);
extern const char luaebpf_decoder_names[]; /* "ipv4, ipv6, ..." for messages */
luaebpf_codec *luaebpf_codec_clone(lua_State *L, const luaebpf_codec *c); /* pushed */
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
/* encode.c's fast path, inline for the element calls: a Lua integer into the
 * bytes of a codec that is one plain 4- or 8-byte integer, when it fits; 0,
 * nothing written, otherwise (the full encoder then converts or names the
 * error) */
static inline int luaebpf_encode_fast(lua_State *L, const luaebpf_codec *c, int idx,
                                      unsigned char *buf) {
    const luaebpf_node *r = c->nodes;
    int64_t v;
    if (r->kind != LUAEBPF_UINT && r->kind != LUAEBPF_INT)
        return 0;
#if LUAEBPF_HAS_INTEGERS
    if (!luaebpf_tointeger_fast(L, idx, &v))
        return 0;
#else /* 5.1: a number whose value is an exact integer, as the full encoder takes it */
    if (lua_type(L, idx) != LUA_TNUMBER || !luaebpf_number_exact(L, idx, &v))
        return 0;
#endif
    if (r->size == 8) {
        memcpy(buf, &v, 8);
        return 1;
    }
    if (r->size == 4 && (r->kind == LUAEBPF_UINT ? (v >= 0 && v <= (int64_t)UINT32_MAX)
                                                 : (v >= INT32_MIN && v <= INT32_MAX))) {
        uint32_t u = (uint32_t)v;
        memcpy(buf, &u, 4);
        return 1;
    }
    return 0;
}
/* decode.c's fast path, inline for the hot loops (lookup, pairs, dump): the
 * bytes of a codec that is one plain 4- or 8-byte integer pushed as the
 * decoders would; 0, nothing pushed, for any other codec or a value Lua
 * cannot hold exactly (the full decode then names it or raises) */
static inline int luaebpf_decode_fast(lua_State *L, const luaebpf_codec *c,
                                      const unsigned char *buf) {
    const luaebpf_node *r = c->nodes;
    if (r->kind != LUAEBPF_UINT && r->kind != LUAEBPF_INT)
        return 0;
    if (r->size == 8) {
        uint64_t v;
        memcpy(&v, buf, 8);
        return luaebpf_push_exact(L, v, r->kind == LUAEBPF_INT);
    }
    if (r->size == 4) { /* exact on every Lua, LuaJIT's doubles too */
        uint32_t u;
        memcpy(&u, buf, 4);
        lua_pushinteger(L, r->kind == LUAEBPF_INT ? (lua_Integer)(int32_t)u : (lua_Integer)u);
        return 1;
    }
    return 0;
}

/* codec.c: specs -> codecs, and core.sizeof/encode/decode */
luaebpf_codec *luaebpf_codec_compile(lua_State *L, int idx, const char *what);
void luaebpf_codec_open(lua_State *L);
/* opts.int64 ("number" or "string") of the options table at idx: 0 or 1; dflt when absent */
int luaebpf_opt_int64(lua_State *L, int idx, int dflt);
/* m:codec{ decode = { ["a.b"] = "ipv4", ... } } (the table at idx) over the key codec kc
 * and the value codec vc (either may be NULL): a path names a field of whichever side
 * has it (both when both do). Checks every entry first and raises naming the path when
 * one does not fit, having changed nothing; else marks the nodes. */
void luaebpf_codec_decorate(lua_State *L, luaebpf_codec *kc, luaebpf_codec *vc, int idx);

/* decoders.c: what the bytes of a DECODED node mean, both ways, without Lua.
 * luaebpf_decoded_read: LUAEBPF_READ_TEXT (text written to buf), LUAEBPF_READ_FLOAT
 * (*f), or LUAEBPF_READ_NUMBER: the bytes map to nothing; *num holds them as an
 * integer (sign-extended for errno) for the caller to push as a number */
enum { LUAEBPF_READ_NUMBER, LUAEBPF_READ_TEXT, LUAEBPF_READ_FLOAT };
int luaebpf_decoded_read(const luaebpf_node *n, const unsigned char *p, char *buf, size_t size,
                         uint64_t *num, double *f);
/* text -> the node's bytes at p: NULL, or what was expected ("an IPv4 address such as
 * \"10.0.0.1\""); decoders that take no text answer so */
const char *luaebpf_decoded_parse(const luaebpf_node *n, const char *s, unsigned char *p);
int luaebpf_decoded_takes_number(const luaebpf_node *n); /* syscall, errno, ksym, ... */
const char *luaebpf_decoded_expected(const luaebpf_node *n); /* "an IPv4 address such as ..." */

/* sysnames.c: this architecture's syscall and errno names, generated at build time
 * from the system headers (NULL / -1 when unknown, or when the build had no table) */
const char *luaebpf_syscall_name(uint64_t nr);
int64_t luaebpf_syscall_number(const char *name);
const char *luaebpf_errno_name(int64_t no); /* no > 0 */
int64_t luaebpf_errno_number(const char *name);
extern const char luaebpf_syscall_arch[]; /* "x86_64-linux-gnu": whose numbers they are */
int luaebpf_sysnames_built(void); /* 0: the build had no generated table */

/* ksym.c: kernel symbols from /proc/kallsyms, read again when BPF programs
 * were loaded since. The name of the symbol holding addr copied into name
 * (cut to size), *off the offset into it: 1; or 0 when none is known (kallsyms
 * unreadable or hidden from this process, addr in no symbol, or in code the
 * table may not have seen) */
#define LUAEBPF_KSYM_NAME 512 /* the kernel's KSYM_NAME_LEN */
int luaebpf_ksym(uint64_t addr, uint64_t *off, char *name, size_t size);
void luaebpf_ksym_open(lua_State *L); /* core.ksym */

/* elfsym.c: function symbols and build ids of ELF files, cached per file */
void luaebpf_elfsym_open(lua_State *L); /* core.elf_symbolize, core.elf_build_id */
/* stack.c: the raw entries of a stack_trace map */
void luaebpf_stack_open(lua_State *L);  /* core.stack_read */

/* ---- shape.c: what a map holds, apart from any handle ---- */
/* Sizes, the per-CPU stride and the codecs of keys and values, for a Map now
 * and for records with no map behind them later. It is embedded in its owner,
 * whose user value table keeps the codecs alive (slots 1 and 2: key and value
 * codec): functions that attach one take the owner's stack index. */
typedef struct luaebpf_shape {
    uint32_t type, key_size, value_size; /* key_size 0: no keys (queue, stack, bloom) */
    int percpu, ncpus;
    size_t value_stride;    /* per-CPU: round_up(value_size, 8); else value_size */
    size_t value_bytes;     /* bytes one lookup writes: value_stride * ncpus if per-CPU */
    const luaebpf_codec *kc, *vc; /* kept alive by the owner's user value table */
    uint32_t btf_id, btf_key_type_id, btf_value_type_id;
    int btf_pending;        /* BTF codecs not loaded yet: 1 key, 2 value */
    int int64_string;       /* opts.int64 = "string": given to every codec attached */
    const char *name;       /* for messages: the owner's name, "" when none (never NULL) */
    uint32_t id;            /* for messages: the owner's kernel id, 0 when none */
} luaebpf_shape;

int luaebpf_ncpus(void); /* possible CPUs, or -errno */
/* sets type, sizes and the per-CPU layout; 0, or the errno when ncpus is unknown */
int luaebpf_shape_init(luaebpf_shape *s, uint32_t type, uint32_t key_size, uint32_t value_size);
int luaebpf_is_btf_spec(lua_State *L, int idx);
/* the codec spec at spec_idx as the key (is_key) or value codec; nil: the BTF
 * when there is some (loaded on first use: opening needs no privilege), else raw */
void luaebpf_shape_set_codec(lua_State *L, luaebpf_shape *s, int owner, int spec_idx,
                             int is_key);
/* m:codec{}: the specs at key_idx and value_idx (nil: unchanged), then the decode
 * table at decode_idx (0 or nil: none) over the resulting codecs, all or nothing */
void luaebpf_shape_change_codecs(lua_State *L, luaebpf_shape *s, int owner, int key_idx,
                                 int value_idx, int decode_idx, int int64_string);
/* loads the BTF (by btf_id) and attaches codecs from it for the sides in `which` */
void luaebpf_shape_load_btf(lua_State *L, luaebpf_shape *s, int owner, int which,
                            const char *op);
void luaebpf_shape_push_codec(lua_State *L, int owner, int is_key); /* the Codec userdata */
const char *luaebpf_shape_desc(const luaebpf_shape *s, int is_key); /* "u32", "btf", ... */
/* key_codec, value_codec (and key_type, value_type from BTF) into the table at idx */
void luaebpf_shape_describe(lua_State *L, const luaebpf_shape *s, int idx);
void luaebpf_encode_key(lua_State *L, const luaebpf_shape *s, int idx, unsigned char *buf);
void luaebpf_decode_key(lua_State *L, const luaebpf_shape *s, const unsigned char *buf);
/* per-CPU: an array of ncpus values, or one value for every CPU */
void luaebpf_encode_percpu_value(lua_State *L, const luaebpf_shape *s, int idx,
                                 unsigned char *buf);
/* the same, with the name ("values[3]") and argument number its errors give */
void luaebpf_encode_percpu_named(lua_State *L, const luaebpf_shape *s, int idx,
                                 unsigned char *buf, const char *what, int arg);
/* inline: a plain value costs no call on the way to the encoder (m:update's hot path) */
static inline void luaebpf_encode_value(lua_State *L, const luaebpf_shape *s, int idx,
                                        unsigned char *buf) {
    if (s->percpu)
        luaebpf_encode_percpu_value(L, s, idx, buf);
    else
        luaebpf_encode(L, s->vc, idx, buf, "value", idx);
}
void luaebpf_decode_value(lua_State *L, const luaebpf_shape *s, const unsigned char *buf);
/* decode_value for the entry whose decoded key is at the absolute index key_idx
 * (0: none), named when a value does not fit Lua */
void luaebpf_decode_entry_value(lua_State *L, const luaebpf_shape *s, const unsigned char *buf,
                                int key_idx);
/* the flag that reads or writes a value holding a struct bpf_spin_lock under it */
static inline uint64_t luaebpf_shape_lock(const luaebpf_shape *s) {
    return s->vc && s->vc->has_lock ? BPF_F_LOCK : 0;
}

/* ---- percpu.c: per-CPU values without a table of ncpus values ---- */
enum { LUAEBPF_PERCPU_SUM = 1, LUAEBPF_PERCPU_MIN, LUAEBPF_PERCPU_MAX };
/* how a lookup answers a per-CPU value: reduced, or into the caller's table */
typedef struct luaebpf_percpu {
    int reduce; /* LUAEBPF_PERCPU_*, 0: none */
    int into;   /* stack index of the table to fill, 0: none */
} luaebpf_percpu;
/* "sum", "min", "max" as LUAEBPF_PERCPU_*, 0 for anything else; inline and by
 * hand, as it runs on every lookup that asks for a reduction */
static inline int luaebpf_percpu_name(const char *name, size_t len) {
    if (len != 3)
        return 0;
    if (name[0] == 's' && name[1] == 'u' && name[2] == 'm')
        return LUAEBPF_PERCPU_SUM;
    if (name[0] == 'm' && name[1] == 'i' && name[2] == 'n')
        return LUAEBPF_PERCPU_MIN;
    if (name[0] == 'm' && name[1] == 'a' && name[2] == 'x')
        return LUAEBPF_PERCPU_MAX;
    return 0;
}
/* opts.percpu's value at idx: a LUAEBPF_PERCPU_*; raises on another name or a map
 * that is not per-CPU */
int luaebpf_percpu_reduction(lua_State *L, int idx, const luaebpf_shape *s, const char *op);
/* opts.into's value at idx: returns when it is a table and the map per-CPU,
 * raises otherwise (the fast check is the caller's; this names what is wrong) */
void luaebpf_percpu_check_into(lua_State *L, int idx, const luaebpf_shape *s, const char *op);
/* raises: options 'percpu' and 'into' were both given */
void luaebpf_percpu_both(lua_State *L, const char *op);
/* pushes the per-CPU value at buf reduced by how; folds it in place (buf is
 * the caller's scratch). key_idx as for luaebpf_decode_entry_value */
void luaebpf_percpu_push(lua_State *L, const luaebpf_shape *s, int how, unsigned char *buf,
                         int key_idx);
/* sets t[1..ncpus] of the table at into to the decoded per-CPU values; pushes t.
 * For a C function's own frame with at most a few slots used (up to 8 CPUs it
 * relies on LUA_MINSTACK instead of checking the stack) */
void luaebpf_percpu_fill(lua_State *L, const luaebpf_shape *s, const unsigned char *buf,
                         int into, int key_idx);

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
    uint32_t access;        /* BPF_F_RDONLY, BPF_F_WRONLY or 0 (read-write) */
    uint32_t id, max_entries, map_flags;
    char name[16];
    luaebpf_shape shape;    /* type, sizes, codecs; its name points at name */
    luaebpf_stats last;     /* the latest walk, as it goes */
} luaebpf_map;

luaebpf_map *luaebpf_check_map(lua_State *L, int idx, const char *op);
luaebpf_map *luaebpf_map_from_fd(lua_State *L, int src_fd);
/* check_map, then load the BTF codecs if they are still pending */
luaebpf_map *luaebpf_check_map_data(lua_State *L, int idx, const char *op);
void luaebpf_push_info(lua_State *L, const struct bpf_map_info *info, uint32_t access);
void luaebpf_map_open(lua_State *L);

/* ---- hint.c: the words after the errno, for map operations ---- */
/* the detail for an element operation's (or a walk's) errno on this map, or
 * NULL; flag: the update flag's name, or "lock" */
const char *luaebpf_elem_hint(const luaebpf_map *m, const char *op, int errnum,
                              const char *flag);
const char *luaebpf_open_hint(int errnum, uint32_t access, int by_id);
/* raises the error of opening the pin at path, saying what most likely went wrong */
int luaebpf_open_failed(lua_State *L, const char *path, int errnum, uint32_t access);
#define LUAEBPF_NOT_A_MAP "the pinned object is not a map (a program or a link?)"
const char *luaebpf_pin_hint(int errnum, const char *path);

/* ---- err.c: errno -> code/class, the error object ---- */
/* ENOTSUPP: the kernel-internal "this map type cannot do that" (batch
 * operations, mmap), which reaches user space as 524; libc has no name for it */
#define LUAEBPF_ENOTSUPP 524
/* 1 for the errnos that mean the map type lacks the operation: ENOTSUPP, EOPNOTSUPP */
int luaebpf_errno_unsupported(int no);
/* push an error object; map may be NULL, id 0 when unknown, detail may be NULL */
void luaebpf_pusherror(lua_State *L, const char *op, int errnum, const char *class_,
                       const char *map, uint32_t id, const char *detail);
void luaebpf_pusherror_about(lua_State *L, const char *op, int errnum, const char *about,
                             const char *name, const char *detail); /* "program", "object" */
int luaebpf_fail(lua_State *L, const char *op, int errnum, const luaebpf_map *m,
                 const char *detail);               /* pushes nil, err; returns 2 */
int luaebpf_raise(lua_State *L, const char *op, int errnum, const char *map, uint32_t id,
                  const char *detail);               /* raises the error object */
/* raises ENOENT on `op` for the `about` named `name`, listing the names the
 * object has (a list on the stack top): "no map named 'x' in this object
 * (it has: a b)" */
int luaebpf_raise_not_found(lua_State *L, const char *op, const char *about, const char *name);
/* raises class "closed" (EBADF) for op on a closed handle; name may be NULL, id 0 */
int luaebpf_raise_closed(lua_State *L, const char *op, const char *name, uint32_t id,
                         const char *detail);
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
int luaebpf_type_holds_maps(uint32_t type);         /* array_of_maps, hash_of_maps */

/* ---- btf.c: the "btf" codec, built from a map's BTF ---- */
struct btf;
luaebpf_codec *luaebpf_codec_from_btf(lua_State *L, const struct btf *btf, uint32_t type_id);
struct btf *luaebpf_btf_load(uint32_t btf_id);


/* ---- object.c: the Object handle; globals.c, link.c and program.c serve it ---- */
struct bpf_object;
struct bpf_link;
typedef struct luaebpf_mapping luaebpf_mapping; /* globals.c: a data section mapped */
typedef struct luaebpf_object {
    struct bpf_object *obj; /* NULL once closed */
    int busy;               /* methods holding libbpf pointers across Lua allocations */
    int close_pending;      /* close() came while busy: done when the last one ends */
    int loaded;             /* 0 between ebpf.load(path, { load = false }) and obj:load() */
    luaebpf_mapping *mappings; /* the loaded object's data sections globals.c mapped */
} luaebpf_object;
/* pushes the Codec of the BTF type called name ("struct event", "union u",
 * "enum e", or a typedef's or integer's name) in the Object at idx */
luaebpf_codec *luaebpf_object_codec(lua_State *L, int idx, const char *name);

/* libbpflog.c: libbpf's log while luaebpf calls libbpf */
void luaebpf_log_begin(void);          /* from here libbpf's log goes to a buffer */
void luaebpf_log_end(lua_State *L);    /* puts the host's callback back, pushes the log */
/* pushes the last `lines` non-empty lines of log[0, end), joined with " | " */
void luaebpf_push_log_lines(lua_State *L, const char *log, size_t end, int lines);
void luaebpf_log_deliver(lua_State *L, int fn, int idx); /* the log at idx to fn, by lines */
/* raises the error of a failed bpf_object__load (errno no, its log at log_idx) */
int luaebpf_raise_load_failure(lua_State *L, const char *path, int no, int log_idx);

/* globals.c: obj:global(name [, value]) on the object at stack index 1, name
 * at 2 and the value at 3 when given; the caller holds the object busy */
int luaebpf_global(lua_State *L, luaebpf_object *o);
void luaebpf_mappings_release(luaebpf_mapping **list); /* unmaps and frees them all */

/* link.c: the Link handle, an attachment of a program (or an open pinned link) */
typedef struct luaebpf_link {
    int fd;                 /* -1 once closed */
    struct bpf_link *link;  /* libbpf's link when luaebpf attached it, else NULL */
    char prog[64];          /* the program's name, or the pinned path, for messages */
} luaebpf_link;
/* pushes a Link not yet attached (fd -1) for program `name`; owner_idx (0: none)
 * is kept alive by it */
luaebpf_link *luaebpf_link_push(lua_State *L, int owner_idx, const char *name);
void luaebpf_link_detach(luaebpf_link *k); /* idempotent */
void luaebpf_link_open(lua_State *L);

/* program.c: the Program handle, one loaded program's fd */
/* pushes a Program owning a dup of fd, keeping owner_idx (0: none) alive */
void luaebpf_program_push(lua_State *L, int owner_idx, int fd, const char *name);
void luaebpf_program_open(lua_State *L);

/* ---- print.c: libbpf's print callback, one for the whole process ---- */
/* Between luaebpf_print_begin and luaebpf_print_end (which enclose libbpf
 * calls, on one thread), what libbpf prints from this thread goes to capture
 * (NULL: to what the enclosing section says, or the host's callback), and
 * with quiet its warnings that a callback stopped it are dropped. Sections
 * nest; begin returns what end needs to restore. */
typedef struct luaebpf_print_section {
    libbpf_print_fn_t capture;
    int quiet;
} luaebpf_print_section;
luaebpf_print_section luaebpf_print_begin(libbpf_print_fn_t capture, int quiet);
void luaebpf_print_end(luaebpf_print_section outer);

/* ---- events.c: what ring buffers and perf buffers share ---- */
/* One map consumed by this process: a ring buffer has one consumer position
 * and a perf_event_array one set of per-CPU buffers, so two consumers of the
 * same map in one process would corrupt each other. A process-wide registry
 * of claims by map id refuses the second. */
typedef struct luaebpf_claim {
    uint32_t id;                /* 0: not claimed */
    char holder[64];            /* "luaebpf.Ringbuf: 0x...": names who holds it */
    struct luaebpf_claim *next;
} luaebpf_claim;

/* where records come from: one ring, or a perf buffer (tag: the CPU, set per record) */
typedef struct luaebpf_source {
    const luaebpf_codec *codec; /* kept alive by the consumer's user value table */
    char name[16];
    uint32_t id;
} luaebpf_source;

typedef struct luaebpf_events luaebpf_events;
typedef struct luaebpf_events_ops {
    const char *kind;                              /* "ringbuf", "perfbuf" */
    int (*poll)(luaebpf_events *ev, int timeout_ms); /* libbpf's answer: < 0 with errno */
    int (*consume)(luaebpf_events *ev);
    int (*epoll_fd)(luaebpf_events *ev);
    void (*release)(luaebpf_events *ev);           /* frees everything; idempotent */
    int unwinds;            /* a raise may cross libbpf's frames: the source consumes each
                             * record itself before it is decoded (ringbuf: between
                             * luaebpf_events_take and _hand_over), so a run needs one
                             * protected call, not one per record */
    int reports_lost;       /* the user value may hold opts.lost (perfbuf) */
    lua_CFunction step;     /* records()' step, upvalues self and timeout; NULL: one run
                             * of libbpf per step (events.c) */
} luaebpf_events_ops;

/* The head of a Ringbuf or Perfbuf userdata (its first member) */
struct luaebpf_events {
    const luaebpf_events_ops *ops;
    int open;               /* 0 until fully set up, and again once closed */
    int busy;               /* a run (poll, consume, records) is delivering */
    int close_pending;      /* close() came during a run: done when it ends */
    /* the run in progress: the callbacks from libbpf deliver into it */
    lua_State *L;
    int fn_idx, lost_idx, deliver_idx; /* stack slots of the run's frame (fn nil: collect) */
    int failed;             /* an error value is on top of L */
    int stopped;            /* the limit was reached, or the consumer closed */
    uint32_t limit, got;    /* limit 0: no limit */
    uint64_t records, bytes, polls;
};

/* claims map m for the consumer `owner` of class tname, or raises class "invalid"
 * (EBUSY) naming the holder: "the <what> already has a consumer ...: <why>" */
void luaebpf_claim_take(lua_State *L, luaebpf_claim *c, const luaebpf_map *m, const char *op,
                        const char *tname, const void *owner, const char *what,
                        const char *why);
void luaebpf_claim_drop(luaebpf_claim *c);
/* pushes the Codec for records from opts (at opts_idx, may be none or nil):
 * opts.record ("raw" by default), opts.btf (default: the Object the Map at
 * map_idx came from), opts.int64 */
luaebpf_codec *luaebpf_record_codec(lua_State *L, int opts_idx, int map_idx);
/* from a libbpf sample callback of a source without unwinds: counts the record,
 * decodes it and hands it to the run; 0 to go on, -1 to stop (an error, the
 * limit, a close) */
int luaebpf_events_deliver(luaebpf_events *ev, const luaebpf_source *src, const void *data,
                           size_t size, lua_Integer tag);
/* from a sample callback of a source with unwinds: -1 when the run has stopped
 * (nothing pushed); else counts a record of size bytes (before it is decoded: it
 * counts also when its decode raises) and pushes fn when the run has one. The
 * source then pushes the record, decoded, and calls luaebpf_events_hand_over,
 * which hands it and tag to fn: 0 to go on, -1 to stop; fn's error unwinds to
 * the run */
int luaebpf_events_take(luaebpf_events *ev, size_t size);
int luaebpf_events_hand_over(luaebpf_events *ev, lua_Integer tag);
/* pushes the record decoded by src's codec from data; a record shorter than the
 * codec raises class "invalid" naming both sizes */
void luaebpf_events_push_record(lua_State *L, const luaebpf_source *src, const void *data,
                                size_t size);
/* pushes the error of a failed wait for records (EINTR: class "transient") */
void luaebpf_events_push_wait_error(lua_State *L, const char *op, int no);
/* from a lost-sample report: calls opts.lost(cpu, count) when there is one; 0 or -1 */
int luaebpf_events_lost(luaebpf_events *ev, int cpu, uint64_t count);
/* the methods both share (upvalue 1: the class's metatable) */
int luaebpf_events_poll(lua_State *L);
int luaebpf_events_consume(lua_State *L);
int luaebpf_events_records(lua_State *L);
int luaebpf_events_fd(lua_State *L);
int luaebpf_events_close(lua_State *L);
int luaebpf_events_gc(lua_State *L);
/* the consumer at idx, open and not running when op needs that (idle) */
luaebpf_events *luaebpf_events_check(lua_State *L, int idx, const char *op, int idle);
/* the Map at idx, checked to be of map type `type` and writable, for op */
luaebpf_map *luaebpf_events_map(lua_State *L, int idx, uint32_t type, const char *op);
void luaebpf_ringbuf_open(lua_State *L);
void luaebpf_perfbuf_open(lua_State *L);

/* ---- fdinfo.c: what /proc/<pid>/fdinfo knows (a leaf) ---- */
/* sets frozen and memlock from /proc/self/fdinfo/<fd> in the table at idx
 * (left out when /proc cannot tell) */
void luaebpf_push_fdinfo(lua_State *L, int fd, int idx);
/* the same in two steps, for a caller that must read before it allocates (a
 * finalizer may close the fd): the fields, -1 when unknown; then set them */
typedef struct luaebpf_fdinfo {
    long long frozen, memlock;
} luaebpf_fdinfo;
void luaebpf_fdinfo_read(int fd, luaebpf_fdinfo *fi);
void luaebpf_fdinfo_push(lua_State *L, const luaebpf_fdinfo *fi, int idx);
/* the number after "<key>:" at the start of a line of text, or -1 */
long long luaebpf_fdinfo_field(const char *text, const char *key);
/* reads the small file path (relative to dirfd) whole into buf, NUL-terminated; 0 or errno */
int luaebpf_read_small(int dirfd, const char *path, char *buf, size_t size);

/* ---- pinned.c: pinning programs and links, opening pins by kind ---- */
/* 1 when fd is the kernel object `anon` names ("bpf_link", "bpf-prog",
 * "bpf-map"), 0 when it is another, -1 when /proc cannot say */
int luaebpf_fd_is(int fd, const char *anon);
/* pins fd at path: pushes true, or nil and the "pin" error about the program
 * called name (a link's is its program's); returns what it pushed */
int luaebpf_pin_fd(lua_State *L, int fd, const char *path, const char *name);
/* the fd of the object pinned at path when it is one of kinds (anon-inode
 * names, NULL-terminated); raises the "open" error naming path otherwise,
 * not_it saying what it is instead */
int luaebpf_open_pinned(lua_State *L, const char *path, const char *const kinds[],
                        const char *not_it);

/* ---- pins.c: where maps are pinned (calls no Lua) ---- */
/* calls found(ctx, map id, path) for each pin of a map (of map id want only,
 * when not 0) on every mounted bpffs; adds to *hidden what refused us or was
 * left unwalked. 0, or the first non-zero answer of found (ENOMEM) */
int luaebpf_pins_walk(uint32_t want, int (*found)(void *ctx, uint32_t map_id, const char *path),
                      void *ctx, uint32_t *hidden);

/* ---- holders.c: who holds a map; freeze ---- */
void luaebpf_holders_open(lua_State *L);

/* ---- batch.c: update_batch, delete_batch ---- */
void luaebpf_batch_open(lua_State *L);

/* ---- inner.c: maps of maps ---- */
/* m:update(key, inner_map [, flag]) on a map of maps, self at 1: the inner
 * Map's fd goes in the value */
int luaebpf_update_inner(lua_State *L, luaebpf_map *m, uint64_t flags, const char *flag);
void luaebpf_inner_open(lua_State *L);

/* ---- iter.c and system.c ---- */
void luaebpf_iter_open(lua_State *L);
void luaebpf_mmap_open(lua_State *L);
void luaebpf_object_open(lua_State *L);
void luaebpf_system_open(lua_State *L);
/* system.c: push the info table of the program (link) fd, as ebpf.progs()
 * (ebpf.links()) gives it; 0, or the errno with nothing pushed */
int luaebpf_push_prog_info(lua_State *L, int fd);
int luaebpf_push_link_info(lua_State *L, int fd);

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
    if (!luaebpf_gc_running(L))
        return; /* the host stopped the collector: leave it stopped */
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

/* ---- auxlib.c: the Lua plumbing every file shares (a leaf) ---- */
/* adds to the module on top a class: metatable `tname` holding `meta`, whose
 * __index is a table of `methods` also stored in the module as `field`; with
 * mt_upvalue, each method gets the metatable as upvalue 1 */
void luaebpf_class(lua_State *L, const char *tname, const char *field, const luaL_Reg *meta,
                   const luaL_Reg *methods, int mt_upvalue);
/* a file path argument: a string with no NUL byte (which would end it early), not empty */
const char *luaebpf_check_path(lua_State *L, int arg);
/* strict option tables: raise on a field not in `known` (NULL-terminated) */
void luaebpf_check_options(lua_State *L, int idx, const char *what, const char *const known[]);
/* A string that must be one of `names` (NULL-terminated, compared with their
 * lengths: a NUL byte never matches): its index, or dflt when absent (dflt
 * may be -1, to tell absence apart). Anything else raises '"a", "b" or "c"
 * expected, got "x"' (or the type given): check_name as argument arg's error
 * (luaL_argerror), opt_name as "bad option 'field': ..." for field `field`
 * of the options table at opts (which may be none or nil). */
int luaebpf_check_name(lua_State *L, int arg, const char *const names[], int dflt);
int luaebpf_opt_name(lua_State *L, int opts, const char *field, const char *const names[],
                     int dflt);

#pragma GCC visibility pop

#endif
