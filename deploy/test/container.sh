# shellcheck shell=bash
# Container helpers for deploy/test/run.sh: a Debian rootfs (SUITE: bookworm or trixie) booted
# with systemd-nspawn, networked by slirp4netns. Source this file; it defines functions and
# sets no traps.
#
# Globals used: SUITE, ROOTFS_TAR, CT_ROOT, CT_NAME, CT_LOG; set by ct_boot:
# CT_PID (the container's PID 1 as seen from the host), NSPAWN_PID, SLIRP_PID.

ROOTFS_PACKAGES="python3,systemd,systemd-sysv,dbus,ca-certificates,sudo"

# Build the cached root filesystem tarball unless it already exists.
ct_build_rootfs() {
    if [[ -s "$ROOTFS_TAR" ]]; then
        echo "rootfs: using cached $ROOTFS_TAR"
        return 0
    fi
    local tmp="${ROOTFS_TAR%.tar.zst}.partial-$$.tar.zst"
    mmdebstrap --quiet --variant=minbase --include="$ROOTFS_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$SUITE" "$tmp" \
        "deb https://deb.debian.org/debian $SUITE main" \
        "deb https://deb.debian.org/debian $SUITE-updates main" \
        "deb https://deb.debian.org/debian-security $SUITE-security main" </dev/null >/dev/null
    mv "$tmp" "$ROOTFS_TAR"
}

# Run a command inside the booted container (all its namespaces, a clean environment:
# the controller's PIP_*/SSL_* variables must not leak in).
ct_exec() {
    nsenter -t "$CT_PID" -m -u -i -n -p -C -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 HOME=/root "$@"
}

# The PID of the container's init: the child of the systemd-nspawn process.
_ct_find_init() {
    local child
    child=$(cat "/proc/$NSPAWN_PID/task/$NSPAWN_PID/children" 2>/dev/null || true)
    echo "${child%% *}"
}

# Unpack, prepare per-boot files (CA certificates, resolver) and boot; wait until systemd is up.
ct_boot() {
    mkdir -p "$CT_ROOT"
    tar --zstd -xpf "$ROOTFS_TAR" -C "$CT_ROOT"
    # Extra CA certificates the host trusts (e.g. a TLS-inspecting egress proxy): without them
    # apt and pip over https fail inside with CERTIFICATE_VERIFY_FAILED.
    local crt copied=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [[ -e "$crt" ]] || continue
        cp "$crt" "$CT_ROOT/usr/local/share/ca-certificates/"
        copied=1
    done
    if ((copied)); then
        chroot "$CT_ROOT" /usr/sbin/update-ca-certificates >/dev/null 2>&1
    fi
    # Stock images list http:// mirrors; the role must switch them to https before it denies
    # outgoing port 80 (the tests check it did).
    sed -i 's|https://deb.debian.org|http://deb.debian.org|' "$CT_ROOT/etc/apt/sources.list"
    rm -f "$CT_ROOT/etc/resolv.conf"
    echo "nameserver 10.0.2.3" >"$CT_ROOT/etc/resolv.conf"
    echo "$CT_NAME" >"$CT_ROOT/etc/hostname"

    setsid systemd-nspawn -q -D "$CT_ROOT" --boot --register=no --keep-unit \
        --private-network --machine="$CT_NAME" </dev/null >"$CT_LOG" 2>&1 &
    NSPAWN_PID=$!
    local _
    for _ in $(seq 1 100); do
        CT_PID=$(_ct_find_init)
        [[ -n "$CT_PID" ]] && break
        sleep 0.1
    done
    [[ -n "$CT_PID" ]] || { echo "container init did not appear" >&2; cat "$CT_LOG" >&2; return 1; }
    slirp4netns --configure --mtu=65520 --disable-host-loopback "$CT_PID" tap0 \
        </dev/null >"$CT_LOG.slirp" 2>&1 &
    SLIRP_PID=$!
    local state=""
    for _ in $(seq 1 150); do
        state=$(ct_exec systemctl is-system-running 2>/dev/null || true)
        case "$state" in running | degraded) break ;; esac
        sleep 0.2
    done
    case "$state" in
    running | degraded) echo "container $CT_NAME up (PID $CT_PID, systemd: $state)" ;;
    *) echo "container did not finish booting (state: ${state:-none})" >&2; return 1 ;;
    esac
    ct_provide_loop_devices
}

# A VM has loop devices; nspawn's private /dev has none. The kernel hands out free loop
# numbers host-wide (LOOP_CTL_GET_FREE), so the nodes alone are enough for `mount -o loop`.
ct_provide_loop_devices() {
    ct_exec sh -c '[ -e /dev/loop-control ] || mknod -m 0600 /dev/loop-control c 10 237
        i=0; while [ $i -lt 64 ]; do
            [ -e /dev/loop$i ] || mknod -m 0600 /dev/loop$i b 7 $i; i=$((i + 1)); done'
}

# Detach loop devices still backed by files of this container (after a hard stop).
_ct_release_loops() {
    [[ -n "${CT_ROOT:-}" && -d "$CT_ROOT" ]] || return 0
    local dev ino majmin img
    while read -r dev ino majmin; do
        for img in "$CT_ROOT"/var/lib/*.img; do
            [[ -e "$img" ]] || continue
            if [[ "$(stat -c '%i %Hd:%Ld' "$img")" == "$ino $majmin" ]]; then
                losetup -d "$dev" 2>/dev/null || true
            fi
        done
    done < <(losetup -n -l -O NAME,BACK-INO,BACK-MAJ:MIN 2>/dev/null)
}

# Power the container off and stop slirp4netns; safe to call more than once.
ct_stop() {
    if [[ -n "${CT_PID:-}" ]] && kill -0 "$CT_PID" 2>/dev/null; then
        kill -s SIGRTMIN+4 "$CT_PID" 2>/dev/null || true
    fi
    if [[ -n "${NSPAWN_PID:-}" ]]; then
        local _
        for _ in $(seq 1 100); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill -s KILL "$NSPAWN_PID" 2>/dev/null
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    if [[ -n "${SLIRP_PID:-}" ]] && kill -0 "$SLIRP_PID" 2>/dev/null; then
        kill "$SLIRP_PID" 2>/dev/null || true
        wait "$SLIRP_PID" 2>/dev/null || true
    fi
    _ct_release_loops
    CT_PID="" NSPAWN_PID="" SLIRP_PID=""
}
