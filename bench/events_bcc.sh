#!/bin/sh
# bench/events_bcc.sh [records_per_round [rounds]]: runs bench/events_bcc.py
# (BCC's Python ring buffer reader) when it can, else says why and skips:
# never fails make bench. Needs Debian's python3-bpfcc (installed here when
# missing and we are root) and the running kernel's headers, which BCC
# compiles against: /lib/modules/$(uname -r)/build, /sys/kernel/kheaders.tar.xz,
# or else Debian's linux-headers-<version>-<arch> and -common packages of some
# other version (apt-get install linux-headers-amd64), merged here into one
# tree under build/bcc-kernel/ and named by BCC_KERNEL_SOURCE: raw tracepoints
# and ring buffers are the same on the running kernel.
skip() { echo "events_bcc: skipped: $*"; exit 0; }
PY=/usr/bin/python3
if ! dpkg-query -W -f='${Status}\n' python3-bpfcc 2>/dev/null | grep -q '^install ok installed'; then
    [ "$(id -u)" = 0 ] || skip "python3-bpfcc is not installed (apt-get install python3-bpfcc as root)"
    (apt-get install -y -q python3-bpfcc || (apt-get update -q && apt-get install -y -q python3-bpfcc)) \
        >/tmp/luaebpf-bcc.log 2>&1 || skip "apt-get install python3-bpfcc failed (/tmp/luaebpf-bcc.log)"
fi
$PY -c 'import bcc' 2>/dev/null || skip "python3 cannot import bcc"
if [ -z "$BCC_KERNEL_SOURCE" ] && [ ! -d "/lib/modules/$(uname -r)/build" ] &&
   [ ! -e /sys/kernel/kheaders.tar.xz ]; then
    arch=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1)
    [ -n "$arch" ] || skip "no kernel headers for $(uname -r) and no Debian linux-headers package (apt-get install linux-headers-amd64)"
    common=$arch
    arch=$(ls -d "${common%-common}"-* 2>/dev/null | grep -v -- '-common$' | head -1)
    [ -n "$arch" ] || skip "no architecture headers beside $common"
    tree=build/bcc-kernel/$(basename "$arch")
    if [ ! -d "$tree/include/generated" ]; then
        rm -rf "$tree" && mkdir -p "$tree" &&
        cp -rs "$common/." "$tree/" && cp -rsf --remove-destination "$arch/." "$tree/" ||
            skip "could not merge $common and $arch into $tree"
    fi
    echo "events_bcc: kernel headers of $(basename "$arch") (BCC_KERNEL_SOURCE=$tree), running $(uname -r)"
    BCC_KERNEL_SOURCE=$(cd "$tree" && pwd); export BCC_KERNEL_SOURCE
fi
$PY bench/events_bcc.py "$@" 2>/tmp/luaebpf-bcc.err ||
    skip "BCC could not load or run here: $(grep -v '^ ' /tmp/luaebpf-bcc.err | tail -1)"
