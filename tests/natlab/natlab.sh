#!/usr/bin/env bash
# natlab.sh: a NAT lab for UDP hole punching, built only from network namespaces.
#
# Usage:
#   natlab.sh up [--nat-a MODE] [--nat-b MODE] [--extra-hops N]
#   natlab.sh exec a|b|inet|rtr-a|rtr-b CMD...
#   natlab.sh probe a|b        classify the NAT in front of a peer (RFC 4787)
#   natlab.sh status           addresses, rulesets, UDP conntrack entries
#   natlab.sh flush            empty every lab conntrack table
#   natlab.sh down             stop lab processes and delete the namespaces (idempotent)
#   natlab.sh check            root and required tools present
#
# MODE (peer A is the client, B the server):
#   public      the peer has a public address, nothing in front of it
#   firewalled  public address, the peer's own stateful firewall drops unsolicited input
#   consistent  NAT router: endpoint-independent mapping ("masquerade persistent"),
#               address+port-dependent filtering (a port-restricted cone home router)
#   random      NAT router: a fresh random port per destination ("masquerade
#               random,fully-random"), address+port-dependent filtering (symmetric NAT)
#
# Topology (198.18.0.0/15 is the lab's internet, 10.0.x.0/24 its home LANs):
#
#                  hsr-inet: core router, ip_forward=1, no default route
#                  lo: 198.18.0.1 .2 .3 (DHT bootstrap nodes), 198.18.0.10 (spare)
#             to-a 198.18.1.254/24                 to-b 198.18.2.254/24
#                  |                                    |
#   NAT:      wan 198.18.1.1  hsr-rtr-a         wan 198.18.2.1  hsr-rtr-b
#             lan 10.0.1.1                      lan 10.0.2.1
#                  |                                    |
#             eth0 10.0.1.2   hsr-a             eth0 10.0.2.2   hsr-b
#   public/firewalled: no router; hsr-a eth0 198.18.1.2/24, hsr-b eth0 198.18.2.2/24
#
# Containment: every veth pair is created inside a lab namespace with its peer end
# moved straight into another lab namespace, so no end ever exists in the root
# namespace; no lab namespace has a route outside 198.18.0.0/15 and 10.0.0.0/8;
# sysctls and rulesets are only ever applied inside lab namespaces. The names all
# start with hsr- (HSR_PREFIX overrides it), so `down` only touches its own lab.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=${HSR_PREFIX:-hsr-}
NS_INET=${PREFIX}inet
NS_RTR_A=${PREFIX}rtr-a
NS_RTR_B=${PREFIX}rtr-b
NS_A=${PREFIX}a
NS_B=${PREFIX}b
# Peers before routers before the core, so nothing is ever left dangling mid-teardown.
ALL_NS=("$NS_A" "$NS_B" "$NS_RTR_A" "$NS_RTR_B" "$NS_INET")
BOOT_IPS=(198.18.0.1 198.18.0.2 198.18.0.3)
SPARE_IP=198.18.0.10
MODES="public firewalled consistent random"
# Where `up` records the modes; cargo xtask natlab points it into its private /run/netns.
STATE_FILE=${HSR_STATE_FILE:-/run/${PREFIX}natlab.state}

log() { printf '[natlab] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { ((EUID == 0)) || die "must run as root (network namespaces, nftables)"; }

check_tools() {
  local t missing=()
  for t in ip nft sysctl; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  if ((${#missing[@]})); then
    die "missing tools: ${missing[*]} (Debian: apt-get install -y iproute2 nftables procps)"
  fi
  ip netns list >/dev/null 2>&1 || die "this iproute2 has no 'ip netns'"
}

ns_exists() { [[ -e /run/netns/$1 ]]; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

kernel_hint() {
  log "the kernel needs NET_NS, VETH, NF_TABLES, NFT_NAT, NFT_MASQ, NFT_CT, NF_CONNTRACK"
  if [[ -r /proc/config.gz ]]; then
    zcat /proc/config.gz | grep -E '^# CONFIG_(VETH|NF_TABLES|NFT_NAT|NFT_MASQ|NFT_CT|NF_CONNTRACK|NET_NS) ' >&2 || true
  fi
}

# ---- teardown ---------------------------------------------------------------------
lab_down() {
  local ns pids tries
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    # A namespace with processes left in it outlives `ip netns del` (only its name
    # goes), so stop them first: exactly the pids living in this namespace.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for ((tries = 0; tries < 30; tries++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -z $pids ]] && break
        sleep 0.1 # polling for the processes to be gone, bounded to 3 s
      done
      # shellcheck disable=SC2086
      [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || log "could not delete $ns"
  done
  rm -f "$STATE_FILE"
}

# ---- building blocks ----------------------------------------------------------------
mk_ns() {
  local ns=$1
  ip netns add "$ns"
  # New namespaces copy init_net's IPv4 conf (rp_filter included) and "default"
  # only reaches interfaces created later, so set it before any link exists.
  in_ns "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  # IPv4 only: no link-local chatter, no v6 source addresses a peer could pick.
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0
  ip -n "$ns" link set lo up
}

# A veth pair between two lab namespaces, created from inside the first one.
mk_link() {
  local ns1=$1 if1=$2 ns2=$3 if2=$4
  ip -n "$ns1" link add "$if1" type veth peer name "$if2" netns "$ns2"
  ip -n "$ns1" link set "$if1" up
  ip -n "$ns2" link set "$if2" up
}

# Side 1 = A, 2 = B.
side_ns() { [[ $1 == 1 ]] && echo "$NS_A" || echo "$NS_B"; }
side_rtr() { [[ $1 == 1 ]] && echo "$NS_RTR_A" || echo "$NS_RTR_B"; }
side_if() { [[ $1 == 1 ]] && echo to-a || echo to-b; }

build_nat_side() {
  local i=$1 mode=$2 peer rtr masq
  peer=$(side_ns "$i") rtr=$(side_rtr "$i")
  mk_ns "$rtr"
  mk_ns "$peer"
  mk_link "$NS_INET" "$(side_if "$i")" "$rtr" wan
  mk_link "$rtr" lan "$peer" eth0
  ip -n "$NS_INET" addr add "198.18.$i.254/24" dev "$(side_if "$i")"
  ip -n "$rtr" addr add "198.18.$i.1/24" dev wan
  ip -n "$rtr" addr add "10.0.$i.1/24" dev lan
  ip -n "$rtr" route add default via "198.18.$i.254"
  ip -n "$peer" addr add "10.0.$i.2/24" dev eth0
  ip -n "$peer" route add default via "10.0.$i.1"
  in_ns "$rtr" sysctl -qw net.ipv4.ip_forward=1
  case $mode in
    # Linux masquerade keeps a free source port and reuses one mapping for every
    # destination: endpoint-independent mapping.
    consistent) masq="masquerade persistent" ;;
    # A uniformly random port for every new destination: symmetric NAT.
    random) masq="masquerade random,fully-random" ;;
  esac
  in_ns "$rtr" nft -f - <<EOF || { kernel_hint; die "NAT ruleset failed to load in $rtr"; }
table ip hsr_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr 10.0.$i.0/24 $masq comment "hsr:$mode"
  }
  # Filtering like a home router: inbound only for flows the LAN started.
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan" oifname "wan" accept
    iifname "wan" oifname "lan" ct state established,related accept
  }
  # Unsolicited packets to the router itself vanish without an ICMP answer,
  # so a punch packet that arrives early costs nothing, as on real CPE.
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
}
EOF
}

build_public_side() {
  local i=$1 mode=$2 peer
  peer=$(side_ns "$i")
  mk_ns "$peer"
  mk_link "$NS_INET" "$(side_if "$i")" "$peer" eth0
  ip -n "$NS_INET" addr add "198.18.$i.254/24" dev "$(side_if "$i")"
  ip -n "$peer" addr add "198.18.$i.2/24" dev eth0
  ip -n "$peer" route add default via "198.18.$i.254"
  [[ $mode == firewalled ]] || return 0
  in_ns "$peer" nft -f - <<'EOF' || { kernel_hint; die "firewall ruleset failed to load"; }
table inet hsr_fw {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
  }
}
EOF
}

lab_up() {
  local nat_a=consistent nat_b=consistent hops=0
  while (($#)); do
    case $1 in
      --nat-a) nat_a=${2:?--nat-a needs a mode}; shift 2 ;;
      --nat-b) nat_b=${2:?--nat-b needs a mode}; shift 2 ;;
      --extra-hops) hops=${2:?--extra-hops needs a number}; shift 2 ;;
      *) die "unknown option to up: $1" ;;
    esac
  done
  local m
  for m in "$nat_a" "$nat_b"; do
    [[ " $MODES " == *" $m "* ]] || die "unknown mode '$m' (one of: $MODES)"
  done
  [[ $hops =~ ^[0-9]+$ ]] || die "--extra-hops must be a number"
  if ((hops > 0)) && ! command -v iptables >/dev/null 2>&1; then
    die "--extra-hops needs iptables for its TTL target (apt-get install -y iptables)"
  fi

  lab_down
  trap 'log "up failed, tearing the lab down"; lab_down' ERR

  mk_ns "$NS_INET"
  in_ns "$NS_INET" sysctl -qw net.ipv4.ip_forward=1
  # The DHT hosts live on lo: dummy interfaces are often missing from VM kernels.
  local ip
  for ip in "${BOOT_IPS[@]}" "$SPARE_IP"; do ip -n "$NS_INET" addr add "$ip/32" dev lo; done
  if ((hops > 0)); then
    # Peer-to-peer packets lose N more TTL crossing the core, so low-TTL punch
    # packets expire on the way as on a real path; DHT traffic is untouched.
    # nft cannot compute `ttl - N`, iptables' TTL target can.
    in_ns "$NS_INET" iptables -t mangle -A PREROUTING -i to-+ ! -d 198.18.0.0/24 -j TTL --ttl-dec "$hops" ||
      die "iptables TTL target failed (needs IP_NF_TARGET_TTL and NFT_COMPAT)"
  fi

  local side mode
  for side in 1 2; do
    [[ $side == 1 ]] && mode=$nat_a || mode=$nat_b
    case $mode in
      public | firewalled) build_public_side "$side" "$mode" ;;
      *) build_nat_side "$side" "$mode" ;;
    esac
  done
  trap - ERR
  printf 'NAT_A=%s\nNAT_B=%s\nEXTRA_HOPS=%s\n' "$nat_a" "$nat_b" "$hops" >"$STATE_FILE"
  log "up: A=$nat_a B=$nat_b extra-hops=$hops"
  lab_summary
}

public_of() { case $2 in public | firewalled) echo "198.18.$1.2" ;; *) echo "198.18.$1.1 (NAT)" ;; esac }

lab_summary() {
  local NAT_A NAT_B EXTRA_HOPS
  # shellcheck disable=SC1090
  source "$STATE_FILE" 2>/dev/null || { log "the lab is not up"; return 1; }
  cat <<EOF
bootstrap: ${BOOT_IPS[*]} (in $NS_INET), spare $SPARE_IP
A ($NS_A): $NAT_A, public $(public_of 1 "$NAT_A")
B ($NS_B): $NAT_B, public $(public_of 2 "$NAT_B")
extra hops: $EXTRA_HOPS
EOF
}

lab_flush() {
  command -v conntrack >/dev/null 2>&1 || die "flush needs conntrack (apt-get install -y conntrack)"
  local ns
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" && in_ns "$ns" conntrack -F >/dev/null 2>&1 || true
  done
}

lab_status() {
  lab_summary || return 0
  local ns
  for ns in "$NS_RTR_A" "$NS_RTR_B" "$NS_A" "$NS_B"; do
    ns_exists "$ns" || continue
    echo "== $ns"
    ip -n "$ns" -4 -o addr show | awk '$2 != "lo" {print "   " $2, $4}'
    in_ns "$ns" nft list ruleset | sed 's/^/   /'
    if command -v conntrack >/dev/null 2>&1; then
      in_ns "$ns" conntrack -L -p udp 2>/dev/null | sed 's/^/   /' || true
    fi
  done
}

# The responder answers from the probed socket, from another port of the same IP
# and from another IP: which answers come through tells the filtering, the
# addresses it saw from one socket tell the mapping.
lab_probe() {
  local ns
  case ${1:-} in a) ns=$NS_A ;; b) ns=$NS_B ;; *) die "usage: probe a|b" ;; esac
  ns_exists "$ns" || die "the lab is not up"
  command -v node >/dev/null 2>&1 || die "probe needs node"
  local fifo pid line
  fifo=$(mktemp -u "/tmp/${PREFIX}probe.XXXXXX")
  mkfifo "$fifo"
  # Direct `ip netns exec … &` so that $! is the responder itself.
  ip netns exec "$NS_INET" node "$HERE/probe.js" responder >"$fifo" &
  pid=$!
  exec 3<"$fifo"
  rm -f "$fifo"
  # The responder prints `ready` once bound; read waits for it (with a deadline).
  IFS= read -r -t 10 line <&3 || { kill "$pid" 2>/dev/null; die "probe responder did not start"; }
  in_ns "$ns" node "$HERE/probe.js" tester || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  exec 3<&-
}

main() {
  local cmd=${1:-help}
  shift || true
  case $cmd in
    up) need_root; check_tools; lab_up "$@" ;;
    down) need_root; lab_down ;;
    exec)
      need_root
      local who=${1:-} ns
      shift || true
      (($#)) || die "usage: exec a|b|inet|rtr-a|rtr-b CMD..."
      case $who in
        a) ns=$NS_A ;; b) ns=$NS_B ;; inet) ns=$NS_INET ;;
        rtr-a) ns=$NS_RTR_A ;; rtr-b) ns=$NS_RTR_B ;;
        *) die "exec: unknown namespace '$who'" ;;
      esac
      ns_exists "$ns" || die "$ns does not exist (lab down, or no router in public mode)"
      exec ip netns exec "$ns" "$@"
      ;;
    probe) need_root; lab_probe "$@" ;;
    status) need_root; lab_status ;;
    flush) need_root; lab_flush ;;
    check) need_root; check_tools; log "ok" ;;
    help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (try: $0 help)" ;;
  esac
}

main "$@"
