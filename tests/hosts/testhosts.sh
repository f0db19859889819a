#!/usr/bin/env bash
# testhosts.sh - N bare Linux hosts on this machine, reachable over real SSH,
# for the SSH bootstrap tests. See tests/hosts/README.md.
#
#   up N             make hosts h1..hN (tears down any previous set first)
#   down             remove everything: processes, netns, links, routes, files
#   cut NAME [drop]  cut the host off (default: carrier loss; drop: iptables DROP)
#   heal NAME        undo cut (keeps a delay)
#   kill NAME        SIGKILL every process of the host (its IP stays: port 22 refuses)
#   restart NAME     kill, then start its sshd again (the rootfs is kept)
#   delay NAME MS    hold every packet the host sends for MS ms (0: off)
#   check            say what is missing to run (root, packages)
#   vars             print the resolved settings as key=value lines
#
# Needs root. Settings (environment; a second fixture on the machine changes
# the first three, the lock follows the prefix):
#   FLEETBENCH_TESTHOSTS_PREFIX  name prefix of netns, links, bridge  (fbh)
#   FLEETBENCH_TESTHOSTS_NET     the private /24, first three octets  (10.213.42)
#   FLEETBENCH_TESTHOSTS_DIR     keys, tables, logs, rootfs trees      (/tmp/fleetbench-testhosts)
#   FLEETBENCH_TESTHOSTS_LOCK    flock file serializing up/down        (/run/fleetbench-testhosts-PREFIX.lock)
set -euo pipefail

P=${FLEETBENCH_TESTHOSTS_PREFIX:-fbh}
NET=${FLEETBENCH_TESTHOSTS_NET:-10.213.42}
D=${FLEETBENCH_TESTHOSTS_DIR:-/tmp/fleetbench-testhosts}
LOCK=${FLEETBENCH_TESTHOSTS_LOCK:-/run/fleetbench-testhosts-$P.lock}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BR=${P}br0                 # the bridge, in the root netns
GW=$NET.1                  # its address: what the hosts reach the coordinator at
ROUTE_METRIC=4242          # of the blackhole route for $NET.0/24
MARK=.fleetbench-testhosts # marks $D as ours, so `down` may remove it
SSHD=/usr/sbin/sshd
BUSYBOX=/bin/busybox

die() { echo "testhosts: $*" >&2; exit 1; }

[[ $P =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "FLEETBENCH_TESTHOSTS_PREFIX '$P': want [a-z][a-z0-9]{0,7}"
[[ $NET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "FLEETBENCH_TESTHOSTS_NET '$NET': want A.B.C"
[[ $D == /* && $D != / ]] || die "FLEETBENCH_TESTHOSTS_DIR '$D': want an absolute path"

# up and down change the machine-wide set: serialize them on the lock, unless
# the caller holds it already (tests/common/hosts.rs holds it for a whole test).
case ${1:-} in
    up | down)
        if [[ -z ${FLEETBENCH_TESTHOSTS_LOCK_HELD:-} ]]; then
            FLEETBENCH_TESTHOSTS_LOCK_HELD=1 exec flock --close "$LOCK" bash "${BASH_SOURCE[0]}" "$@"
        fi ;;
esac

ns_of() { echo "$P-$1"; }   # h3 -> fbh-h3: its netns, and the root side of its veth
idx_of() { [[ $1 =~ ^h([1-9][0-9]*)$ ]] || die "bad host name '$1' (want h1, h2, ...)"; echo "${BASH_REMATCH[1]}"; }
ip_of() { echo "$NET.$((10 + $(idx_of "$1")))"; }
hdir() { echo "$D/hosts/$1"; }
host_pids() { ip netns pids "$(ns_of "$1")" 2>/dev/null || true; }
alive() {   # $1=pid: running (a zombie is not: init reaps it, maybe slowly)
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [[ ${st%% *} != Z ]]
}
v6off() { [[ ! -d /proc/sys/net/ipv6 ]] || echo 1 > "/proc/sys/net/ipv6/conf/$1/disable_ipv6"; }
our_netns() { ip netns list | awk '{print $1}' | grep -E "^$P-h[0-9]+\$" || true; }
need_host() {
    [[ -n ${1:-} ]] || die "which host?"
    idx_of "$1" >/dev/null
    if ! [[ -d $(hdir "$1") ]] || ! ip netns list | awk '{print $1}' | grep -qx "$(ns_of "$1")"; then
        die "no host '$1' (is the fixture up?)"
    fi
}

cmd_check() {   # everything `up` needs, with the package to install
    local missing=() c pkg
    for c in "$SSHD:openssh-server" ssh-keygen:openssh-client ssh:openssh-client \
             "$BUSYBOX:busybox-static" ip:iproute2 iptables:iptables python3:python3 \
             unshare:util-linux flock:util-linux setsid:util-linux mount:mount timeout:coreutils; do
        pkg=${c##*:}; c=${c%:*}
        command -v "$c" >/dev/null || missing+=("$pkg")
    done
    # Debian's `busybox` package is dynamic and would not run in the chroot.
    if [[ -x $BUSYBOX ]] && ldd "$BUSYBOX" >/dev/null 2>&1; then missing+=(busybox-static); fi
    local msg=()
    [[ $EUID == 0 ]] || msg+=("must run as root")
    if ((${#missing[@]})); then
        msg+=("missing packages; install with: apt-get install $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')(see tests/hosts/README.md: never start the system ssh service)")
    fi
    ((${#msg[@]} == 0)) || die "$(IFS=';'; echo "${msg[*]}")"
}

build_rootfs() {   # $1=dir: busybox-static, a few /dev nodes, nothing dynamic can run
    local r=$1
    mkdir -p "$r"/{usr/bin,etc,dev,proc,tmp,root,var/tmp,run}
    ln -s usr/bin "$r/bin"; ln -s usr/bin "$r/sbin"; ln -s bin "$r/usr/sbin"
    cp "$BUSYBOX" "$r/usr/bin/busybox"
    # One symlink per applet, to busybox's own path here (/usr/bin/busybox on
    # merged-/usr Debian), which is where the copy sits inside the chroot too.
    "$BUSYBOX" --install -s "$r/usr/bin"
    # sshd runs the login shell of the *system* passwd (/bin/bash) after the
    # chroot; busybox has no bash, and Debian's has no nohup either.
    rm -f "$r/usr/bin/bash" "$r/usr/bin/nohup"
    printf '#!/bin/sh\nexec /bin/sh "$@"\n' > "$r/usr/bin/bash"
    cat > "$r/usr/bin/nohup" <<'EOF'
#!/bin/sh
# nohup shim: ignore SIGHUP; output that would go to a terminal goes to nohup.out
trap '' HUP
[ -t 1 ] && exec >>nohup.out
[ -t 2 ] && exec 2>&1
exec "$@"
EOF
    chmod 755 "$r/usr/bin/bash" "$r/usr/bin/nohup"
    echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
    echo 'root:x:0:' > "$r/etc/group"
    mknod -m 666 "$r/dev/null" c 1 3
    mknod -m 666 "$r/dev/zero" c 1 5
    mknod -m 666 "$r/dev/full" c 1 7
    mknod -m 666 "$r/dev/random" c 1 8
    mknod -m 666 "$r/dev/urandom" c 1 9
    mknod -m 666 "$r/dev/tty" c 5 0
    ln -s /proc/self/fd "$r/dev/fd"
    ln -s /proc/self/fd/0 "$r/dev/stdin"
    ln -s /proc/self/fd/1 "$r/dev/stdout"
    ln -s /proc/self/fd/2 "$r/dev/stderr"
    chmod 1777 "$r/tmp" "$r/var/tmp"
    chmod 700 "$r/root"
    chmod 755 "$r"
    chown -R root:root "$r"
}

write_sshd_config() {   # $1=name
    local h=$1 hd; hd=$(hdir "$1")
    cat > "$hd/sshd_config" <<EOF
# sshd of test host $h ($(ip_of "$h")) in netns $(ns_of "$h"); see tests/hosts/testhosts.sh
ListenAddress 0.0.0.0:22
AddressFamily inet
HostKey $hd/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile $D/authorized_keys
# authorized_keys and the host key live under a world-writable /tmp
StrictModes no
PermitRootLogin prohibit-password
AllowUsers root
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# The host's rootfs, bind-mounted there inside the host's own mount namespace
# (ChrootDirectory must be root-owned and not writable by others from / down).
ChrootDirectory /run/host
Subsystem sftp internal-sftp
MaxStartups 200:30:400
MaxSessions 200
LogLevel VERBOSE
EOF
}

start_host() {   # $1=name: sshd as PID 1 of fresh pid/mount/uts/ipc namespaces in the host's netns
    local h=$1 hd; hd=$(hdir "$1")
    # In the private mount namespace: a tmpfs on /run (so nothing is made in
    # the machine's /run), the privsep dir, the rootfs on /run/host and a proc
    # of the host's own pid namespace in it.
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    setsid ip netns exec "$(ns_of "$h")" \
        unshare --pid --fork --kill-child --mount --uts --ipc --propagation private \
        /bin/sh -c 'set -e
            mount -t tmpfs -o mode=755,size=1m,nosuid,nodev,noexec testhost-run /run
            mkdir -m 755 /run/sshd /run/host
            mount --bind "$1" /run/host
            mount -t proc -o nosuid,nodev,noexec proc /run/host/proc
            echo "$2" > /proc/sys/kernel/hostname
            exec "$3" -D -f "$4" -E "$5"' \
        sh "$hd/root" "$h" "$SSHD" "$hd/sshd_config" "$hd/sshd.log" \
        </dev/null >>"$hd/console.log" 2>&1 &
    # setsid does not fork here (a background job is no group leader) and
    # `ip netns exec` execs: this is unshare's pid, alive as long as the host.
    echo $! > "$hd/host.pid"
}

wait_ready() {   # each named host's sshd sends its banner, within 20 s
    local h ip banner deadline=$((SECONDS + 20))
    for h in "$@"; do
        ip=$(ip_of "$h")
        # shellcheck disable=SC2016
        until banner=$(timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/22" && head -c 8 <&3' "$ip" 2>/dev/null) &&
              [[ $banner == SSH-2.0-* ]]; do
            if ! alive "$(cat "$(hdir "$h")/host.pid")"; then
                die "sshd of $h died: $(tail -n 5 "$(hdir "$h")/console.log" "$(hdir "$h")/sshd.log" 2>/dev/null)"
            fi
            ((SECONDS < deadline)) || die "sshd of $h not answering on $ip:22; see $(hdir "$h")/sshd.log"
            sleep 0.02
        done
    done
}

kill_host() {   # SIGKILL every process in the host's netns: sshd (its PID 1), sessions, agents
    local h=$1 pids n=0
    while pids=$(host_pids "$h"); [[ -n $pids ]]; do
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        ((++n < 200)) || die "processes of $h do not die: $pids"
        sleep 0.01
    done
}

# Faults. The kernel here has no sch_netem, so a delay is nfqdelay.py: it
# stays in the root netns with its NFQUEUE socket opened in the host's netns.
stop_delayer() {
    local hd pid; hd=$(hdir "$1")
    pid=$(cat "$hd/nfqdelay.pid" 2>/dev/null) || return 0
    if grep -qs nfqdelay.py "/proc/$pid/cmdline"; then
        kill "$pid" 2>/dev/null || true
        for _ in {1..250}; do alive "$pid" || break; sleep 0.01; done
        ! alive "$pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$hd/nfqdelay.pid" "$hd/nfqdelay.ready"
}

apply_faults() {   # rebuild the host's filter rules from its state files
    local h=$1 ns hd ms cut pid deadline
    ns=$(ns_of "$h"); hd=$(hdir "$h")
    ms=$(cat "$hd/delay_ms" 2>/dev/null || echo 0)
    cut=$(cat "$hd/cut" 2>/dev/null || true)
    ipt() { ip netns exec "$ns" iptables -w "$@"; }
    ipt -F INPUT; ipt -F OUTPUT
    stop_delayer "$h"   # after the queue rule is gone: it lets go of what it holds
    if [[ $cut == drop ]]; then
        ipt -A INPUT -i eth0 -j DROP
        ipt -A OUTPUT -o eth0 -j DROP
    fi
    if ((ms > 0)); then
        setsid python3 "$HERE/nfqdelay.py" "/run/netns/$ns" 0 "$ms" "$hd/nfqdelay.ready" \
            </dev/null >>"$hd/nfqdelay.log" 2>&1 &
        pid=$!; echo "$pid" > "$hd/nfqdelay.pid"
        deadline=$((SECONDS + 10))
        until [[ -e $hd/nfqdelay.ready ]]; do
            alive "$pid" || die "nfqdelay for $h exited: $(tail -n 5 "$hd/nfqdelay.log")"
            ((SECONDS < deadline)) || die "nfqdelay for $h not ready; see $hd/nfqdelay.log"
            sleep 0.01
        done
        ipt -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
    fi
}

cmd_up() {
    local n=${1:-} i h hd ns ip
    [[ $n =~ ^[0-9]+$ ]] || die "usage: up N (1..200)"
    ((10#$n >= 1 && 10#$n <= 200)) || die "usage: up N (1..200)"
    n=$((10#$n))
    cmd_check
    cmd_down >/dev/null
    mkdir -p "$D/hosts"; touch "$D/$MARK"
    ssh-keygen -q -t ed25519 -N '' -C fleetbench-testhosts-client -f "$D/id_ed25519"
    cp "$D/id_ed25519.pub" "$D/authorized_keys"

    ip link add "$BR" type bridge stp_state 0 forward_delay 0
    v6off "$BR"
    ip addr add "$GW/24" dev "$BR"
    ip link set "$BR" up
    # If the bridge goes away, the /24 still never leaves through eth0.
    ip route add blackhole "$NET.0/24" metric "$ROUTE_METRIC"

    : > "$D/known_hosts"
    printf '# name\tip\tport\tuser\tnetns\trootfs\n' > "$D/hosts.tsv"
    : > "$D/ssh_config"
    for ((i = 1; i <= n; i++)); do
        h=h$i; hd=$(hdir "$h"); ns=$(ns_of "$h"); ip=$(ip_of "$h")
        mkdir -p "$hd"
        build_rootfs "$hd/root"
        ssh-keygen -q -t ed25519 -N '' -C "$h" -f "$hd/ssh_host_ed25519_key"
        write_sshd_config "$h"
        ip netns add "$ns"
        ip netns exec "$ns" bash -c "$(declare -f v6off); v6off all; v6off default"
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        v6off "$ns"
        ip link set "$ns" master "$BR" up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up   # and no default route: only $NET.0/24 exists
        start_host "$h"
        echo "$ip $(cut -d' ' -f1,2 "$hd/ssh_host_ed25519_key.pub")" >> "$D/known_hosts"
        printf '%s\t%s\t22\troot\t%s\t%s\n' "$h" "$ip" "$ns" "$hd/root" >> "$D/hosts.tsv"
        printf 'Host %s\n  HostName %s\n' "$h" "$ip" >> "$D/ssh_config"
    done
    cat >> "$D/ssh_config" <<EOF
Host *
  User root
  Port 22
  IdentityFile $D/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $D/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  LogLevel ERROR
EOF
    echo "$GW" > "$D/coordinator_ip"
    # shellcheck disable=SC2046
    wait_ready $(seq -f 'h%g' 1 "$n")
    echo "up: $n hosts ($NET.11..$NET.$((10 + n))), coordinator at $GW; try: ssh -F $D/ssh_config h1 uname -a"
}

cmd_down() {
    local ns h
    for ns in $(our_netns); do
        h=${ns#"$P"-}
        stop_delayer "$h"
        kill_host "$h"
        ip netns del "$ns"
    done
    # root-side veths of half-made hosts (a veth pair dies with its netns)
    for ns in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$P-h[0-9]+\$" || true); do
        ip link del "$ns" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
    while ip route del blackhole "$NET.0/24" metric "$ROUTE_METRIC" 2>/dev/null; do :; done
    if [[ -d $D ]]; then
        [[ -e $D/$MARK ]] || die "$D exists and is not a fixture directory (no $MARK): not removing it"
        rm -rf "$D"
    fi
    echo "down: done"
}

cmd_vars() {
    printf 'dir=%s\nprefix=%s\nnet=%s\nbridge=%s\ncoordinator_ip=%s\nlock=%s\n' \
        "$D" "$P" "$NET.0/24" "$BR" "$GW" "$LOCK"
}

case ${1:-} in
    up)      cmd_up "${2:-}" ;;
    down)    cmd_down ;;
    cut)     need_host "${2:-}"
             case ${3:-link} in
                 link) echo link > "$(hdir "$2")/cut"; ip link set dev "$(ns_of "$2")" down ;;
                 drop) echo drop > "$(hdir "$2")/cut"; apply_faults "$2" ;;
                 *)    die "usage: cut NAME [link|drop]" ;;
             esac ;;
    heal)    need_host "${2:-}"
             rm -f "$(hdir "$2")/cut"; apply_faults "$2"; ip link set dev "$(ns_of "$2")" up ;;
    kill)    need_host "${2:-}"; kill_host "$2" ;;
    restart) need_host "${2:-}"; kill_host "$2"; start_host "$2"; wait_ready "$2" ;;
    delay)   need_host "${2:-}"
             [[ ${3:-} =~ ^[0-9]+$ ]] || die "usage: delay NAME MS (0: off)"
             echo "$3" > "$(hdir "$2")/delay_ms"; apply_faults "$2" ;;
    check)   cmd_check ;;
    vars)    cmd_vars ;;
    *)       sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
