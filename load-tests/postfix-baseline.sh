#!/usr/bin/env bash
# Postfix baseline on this machine, for comparison with load-tests/ingest-bench.ts.
#
#   load-tests/postfix-baseline.sh [--count 2000] [--concurrency 20] [--size 4096] [--out FILE]
#     [--no-postfix] [--quiet-wait 60]
#
# Needs root (to start a throwaway Postfix instance and to let smtp-sink drop privileges) and the
# Debian package postfix, which it installs when smtp-source is missing. It measures:
#   A. smtp-sink (Postfix's SMTP test server: accepts and discards, no queue, no disk) driven by
#      smtp-source with persistent connections (-d): the SMTP protocol ceiling of this machine.
#   B. the same without -d: a new connection per message.
#   C. a real Postfix (smtpd -> cleanup -> queue files with fsync -> qmgr -> smtp client) on a
#      loopback high port, relaying everything to a fresh smtp-sink: acceptance time from
#      smtp-source, drain time until the sink has every message, and Postfix's own per-message
#      delay from its log.
#   D. the same Postfix instance driven by load-tests/smtp-load.ts (the generator the Moat bench
#      uses), for the DATA-end -> 250 latency percentiles.
#   E. smtp-sink driven by load-tests/smtp-load.ts: the generator's own ceiling.
# The instance lives in a temporary directory (config, queue, data, log) with its own master
# process; /etc/postfix and the system's Postfix are not touched. Everything is torn down at exit.
# Results: load-tests/results/postfix-baseline.md (overwritten: latest results).
set -euo pipefail

COUNT=2000
CONCURRENCY=20
SIZE=4096
RUN_POSTFIX=1
QUIET_WAIT=60
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="$HERE/results/postfix-baseline.md"
COMMAND="load-tests/postfix-baseline.sh $*"
COMMAND="${COMMAND% }"
DRAIN_TIMEOUT=300

while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-postfix) RUN_POSTFIX=0; shift ;;
    --quiet-wait) QUIET_WAIT="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for v in COUNT CONCURRENCY SIZE QUIET_WAIT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "--${v,,} must be a whole number" >&2; exit 2; }
done
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
[ "$(id -u)" = 0 ] || { echo "run as root (a Postfix instance and smtp-sink -u need it)" >&2; exit 2; }

if ! command -v smtp-source >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-source ]; then
  echo "installing postfix (for smtp-source and smtp-sink)..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
export PATH="$PATH:/usr/sbin"

TMP="$(mktemp -d /tmp/moat-postfix-bench-XXXXXX)"
chmod 755 "$TMP"
SINK_PID=""
PF_STARTED=0

cleanup() {
  set +e
  if [ "$PF_STARTED" = 1 ]; then
    postfix -c "$TMP/etc" stop >/dev/null 2>&1
    # master exits within a few seconds; make sure this instance's master is gone
    for _ in $(seq 1 50); do
      [ -f "$TMP/queue/pid/master.pid" ] || break
      pid="$(tr -d ' ' < "$TMP/queue/pid/master.pid" 2>/dev/null)"
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# A free TCP port on loopback (bounded number of tries).
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( (RANDOM % 30000) + 30000 ))
    if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2
  return 1
}

# Busy and total jiffies of the whole machine.
cpu_times() { awk '/^cpu /{ t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t; exit }' /proc/stat; }
busy_pct() { # before-busy before-total after-busy after-total
  awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" 'BEGIN { printf "%.0f", 100 * (b1-b0) / ((t1-t0) > 0 ? (t1-t0) : 1) }'
}

# Starts a fresh smtp-sink on a free port: sets SINK_PORT, SINK_PID, SINK_OUT.
start_sink() {
  if [ -n "$SINK_PID" ]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  SINK_PORT="$(free_port)"
  SINK_OUT="$TMP/sink-$SINK_PORT.out"
  smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1024 >"$SINK_OUT" 2>&1 &
  SINK_PID=$!
  for _ in $(seq 1 100); do
    ss -Hltn "sport = :$SINK_PORT" | grep -q . && return 0
    sleep 0.05
  done
  echo "smtp-sink did not start" >&2
  return 1
}
# Messages the current smtp-sink has received (its -c counter).
sink_count() { tr '\r' '\n' <"$SINK_OUT" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || true; }
wait_sink() { # count, timeout seconds; prints the time it got there (or nothing)
  local want="$1" limit="$2" i n
  for i in $(seq 1 $((limit * 50))); do
    n="$(sink_count)"
    if [ "${n:-0}" -ge "$want" ]; then now; return 0; fi
    sleep 0.02
  done
  echo "timed out waiting for $want messages at smtp-sink (got ${n:-0})" >&2
  return 1
}

# Runs smtp-source against host:port; prints "seconds"; extra args go before the target.
run_source() { # port, extra args...
  local port="$1"; shift
  local t0 t1
  t0="$(now)"
  smtp-source "$@" -s "$CONCURRENCY" -m "$COUNT" -l "$SIZE" -t to@bench.test -f from@sender.test "127.0.0.1:$port"
  t1="$(now)"
  calc "$t1 - $t0" 3
}

percentiles() { # reads numbers (seconds) on stdin, prints "p50 p95 p99 max" in ms
  sort -g | awk '{ v[NR]=$1 } END {
    if (NR == 0) { print "n/a n/a n/a n/a"; exit }
    split("50 95 99", ps, " ")
    out=""
    for (i=1;i<=3;i++) { r=int((ps[i]/100)*NR + 0.999999); if (r<1) r=1; if (r>NR) r=NR; out=out sprintf("%.1f ", v[r]*1000) }
    printf "%s%.1f\n", out, v[NR]*1000 }'
}

# Medians of Postfix's delays=a/b/c/d (before qmgr incl. transmission / in qmgr / connection setup /
# transmission to the relay), from status=sent log lines on stdin, in ms.
delays_breakdown() {
  local lines k out=""
  lines="$(grep 'status=sent' | grep -o 'delays=[0-9./]*' | cut -d= -f2)"
  [ -n "$lines" ] || { echo "n/a"; return 0; }
  for k in 1 2 3 4; do
    out="$out$(echo "$lines" | cut -d/ -f"$k" | sort -g | awk '{ v[NR]=$1 } END { printf "%.0f", v[int((NR+1)/2)]*1000 }') "
  done
  read -r a b c d <<<"$out"
  echo "a $a · b $b · c $c · d $d ms"
}

# Waits up to QUIET_WAIT seconds for the machine to be nearly idle (< 15 % busy over one second),
# so that other work does not skew the figures; records how busy it was.
wait_quiet() {
  local b0 t0 b1 t1 pct=100 i
  for i in $(seq 1 "$((QUIET_WAIT > 0 ? QUIET_WAIT : 1))"); do
    read -r b0 t0 < <(cpu_times)
    sleep 1
    read -r b1 t1 < <(cpu_times)
    pct="$(busy_pct "$b0" "$t0" "$b1" "$t1")"
    [ "$pct" -lt 15 ] && break
  done
  QUIET_NOTE="machine $pct % busy just before the run (waited ${i} s for < 15 %)"
  LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
}

ROWS=()
NOTES=()
wait_quiet
echo "$QUIET_NOTE" >&2

echo "== A. smtp-sink, persistent connections (smtp-source -d)" >&2
start_sink
read -r b0 t0 < <(cpu_times)
secs="$(run_source "$SINK_PORT" -d)"
read -r b1 t1 < <(cpu_times)
got="$(sink_count)"
ROWS+=("| A | smtp-sink (accept and discard, no queue) | smtp-source -d | $CONCURRENCY persistent | $COUNT | ${got:-0} | $secs | $(calc "$COUNT / $secs" 0) | n/a | n/a | n/a | $(busy_pct "$b0" "$t0" "$b1" "$t1") % |")
CMD_A="smtp-sink -u nobody -c 127.0.0.1:PORT 1024 & smtp-source -d -s $CONCURRENCY -m $COUNT -l $SIZE -t to@bench.test -f from@sender.test 127.0.0.1:PORT"

echo "== B. smtp-sink, one connection per message" >&2
start_sink
read -r b0 t0 < <(cpu_times)
secs="$(run_source "$SINK_PORT")"
read -r b1 t1 < <(cpu_times)
got="$(sink_count)"
ROWS+=("| B | smtp-sink (accept and discard, no queue) | smtp-source | new connection per message | $COUNT | ${got:-0} | $secs | $(calc "$COUNT / $secs" 0) | n/a | n/a | n/a | $(busy_pct "$b0" "$t0" "$b1" "$t1") % |")
CMD_B="smtp-source -s $CONCURRENCY -m $COUNT -l $SIZE -t to@bench.test -f from@sender.test 127.0.0.1:PORT"

echo "== E. smtp-sink driven by load-tests/smtp-load.ts (the generator's own ceiling)" >&2
start_sink
read -r b0 t0 < <(cpu_times)
(cd "$ROOT" && node --import tsx load-tests/smtp-load.ts --port "$SINK_PORT" --count "$COUNT" --concurrency "$CONCURRENCY" \
  --size "$SIZE" --to to@bench.test --from from@sender.test --json "$TMP/load-e.json" >&2)
read -r b1 t1 < <(cpu_times)
got="$(sink_count)"
read -r secs rate e50 e99 < <(node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
  const f = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : "n/a")
  console.log(f(r.elapsedMs / 1000, 3), f(r.messagesPerSecond, 0), f(r.latency.p50, 1), f(r.latency.p99, 1))' "$TMP/load-e.json")
ROWS+=("| E | smtp-sink (accept and discard, no queue) | smtp-load.ts | $CONCURRENCY persistent | $COUNT | ${got:-0} | $secs | $rate | n/a | n/a | n/a | $(busy_pct "$b0" "$t0" "$b1" "$t1") % |")
LATENCY_E="DATA end → 250 (smtp-load.ts against smtp-sink): p50 $e50 ms · p99 $e99 ms"
CMD_E="npx tsx load-tests/smtp-load.ts --port PORT --count $COUNT --concurrency $CONCURRENCY --size $SIZE --to to@bench.test --from from@sender.test"

POSTFIX_STATUS="not run (--no-postfix)"
if [ "$RUN_POSTFIX" = 1 ]; then
  start_sink
  PF_PORT="$(free_port)"
  mkdir -p "$TMP/etc" "$TMP/queue" "$TMP/data"
  chown postfix "$TMP/data"
  cat >"$TMP/etc/main.cf" <<EOF
# throwaway benchmark instance: loopback only, relays everything to smtp-sink
compatibility_level = 3.6
queue_directory = $TMP/queue
data_directory = $TMP/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
maillog_file_prefixes = $TMP
maillog_file = $TMP/maillog
delay_logging_resolution_limit = 3
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
EOF
  # the Debian master.cf services, without chroot, plus smtpd on a loopback high port
  cat >"$TMP/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  if postfix -c "$TMP/etc" check >"$TMP/check.log" 2>&1 && postfix -c "$TMP/etc" start >"$TMP/start.log" 2>&1; then
    PF_STARTED=1
    for _ in $(seq 1 100); do
      ss -Hltn "sport = :$PF_PORT" | grep -q . && break
      sleep 0.05
    done
  fi
  if [ "$PF_STARTED" = 1 ] && ss -Hltn "sport = :$PF_PORT" | grep -q .; then
    POSTFIX_STATUS="ran: Postfix $(postconf -h mail_version) instance in a temporary directory, smtpd on 127.0.0.1:<port>, relayhost smtp-sink"
    # a short warm-up (process pool, connection cache), like the Moat bench's
    smtp-source -d -s 5 -m 50 -l "$SIZE" -t to@bench.test -f from@sender.test "127.0.0.1:$PF_PORT"
    wait_sink 50 60 >/dev/null || true

    echo "== C. Postfix relay to smtp-sink, smtp-source -d" >&2
    base="$(sink_count)"
    log0="$(wc -l <"$TMP/maillog")"
    read -r b0 t0 < <(cpu_times)
    start="$(now)"
    secs="$(run_source "$PF_PORT" -d)"
    done_at="$(wait_sink $((base + COUNT)) "$DRAIN_TIMEOUT" || true)"
    read -r b1 t1 < <(cpu_times)
    got=$(( $(sink_count) - base ))
    if [ -n "$done_at" ]; then drain="$(calc "$done_at - $start" 3)"; else drain="timeout"; fi
    read -r d50 d95 d99 dmax < <(tail -n +"$((log0 + 1))" "$TMP/maillog" | grep 'status=sent' | grep -o ' delay=[0-9.]*' | cut -d= -f2 | percentiles)
    e2e_rate="n/a"; [ "$drain" != timeout ] && e2e_rate="$(calc "$got / $drain" 0)"
    DELAYS_C="$(tail -n +"$((log0 + 1))" "$TMP/maillog" | delays_breakdown)"
    ROWS+=("| C | Postfix → smtp-sink (queue, fsync, relay) | smtp-source -d | $CONCURRENCY persistent | $COUNT | $got | $secs | $(calc "$COUNT / $secs" 0) | $drain | $e2e_rate | $d50 / $d99 | $(busy_pct "$b0" "$t0" "$b1" "$t1") % |")
    CMD_C="smtp-source -d -s $CONCURRENCY -m $COUNT -l $SIZE -t to@bench.test -f from@sender.test 127.0.0.1:POSTFIX_PORT"

    echo "== D. Postfix relay to smtp-sink, load-tests/smtp-load.ts" >&2
    base="$(sink_count)"
    log0="$(wc -l <"$TMP/maillog")"
    read -r b0 t0 < <(cpu_times)
    (cd "$ROOT" && node --import tsx load-tests/smtp-load.ts --port "$PF_PORT" --count "$COUNT" --concurrency "$CONCURRENCY" \
      --size "$SIZE" --to to@bench.test --from from@sender.test --json "$TMP/load.json" >&2)
    done_at="$(wait_sink $((base + COUNT)) "$DRAIN_TIMEOUT" || true)"
    read -r b1 t1 < <(cpu_times)
    got=$(( $(sink_count) - base ))
    read -r secs rate a50 a95 a99 start errors < <(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
      const f = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : "n/a")
      console.log(f(r.elapsedMs / 1000, 3), f(r.messagesPerSecond, 0), f(r.latency.p50, 1), f(r.latency.p95, 1), f(r.latency.p99, 1), (r.startedAt / 1000).toFixed(6), r.errors)' "$TMP/load.json")
    if [ -n "$done_at" ]; then drain="$(calc "$done_at - $start" 3)"; else drain="timeout"; fi
    read -r d50 d95 d99 dmax < <(tail -n +"$((log0 + 1))" "$TMP/maillog" | grep 'status=sent' | grep -o ' delay=[0-9.]*' | cut -d= -f2 | percentiles)
    e2e_rate="n/a"; [ "$drain" != timeout ] && e2e_rate="$(calc "$got / $drain" 0)"
    ROWS+=("| D | Postfix → smtp-sink (queue, fsync, relay) | smtp-load.ts | $CONCURRENCY persistent | $COUNT | $got | $secs | $rate | $drain | $e2e_rate | $d50 / $d99 | $(busy_pct "$b0" "$t0" "$b1" "$t1") % |")
    LATENCY_D="DATA end → 250 (smtp-load.ts against Postfix): p50 $a50 ms · p95 $a95 ms · p99 $a99 ms; errors: $errors"
    CMD_D="npx tsx load-tests/smtp-load.ts --port POSTFIX_PORT --count $COUNT --concurrency $CONCURRENCY --size $SIZE --to to@bench.test --from from@sender.test"
    deferred="$(find "$TMP/queue/deferred" -type f | wc -l)"
    if [ "$deferred" != 0 ]; then NOTES+=("$deferred messages were left in Postfix's deferred queue."); fi
  else
    POSTFIX_STATUS="could not start the throwaway instance: $(tail -3 "$TMP/check.log" "$TMP/start.log" 2>/dev/null | tr '\n' ' ')"
    echo "$POSTFIX_STATUS" >&2
  fi
fi

mkdir -p "$(dirname "$OUT")"
{
  echo "# Postfix baseline"
  echo
  echo "Latest run: $(date -u +%Y-%m-%dT%H:%M:%SZ). Written by \`load-tests/postfix-baseline.sh\`; \`load-tests/README.md\` explains each figure."
  echo
  echo "| run | server | driver | connections | sent | arrived at sink | accept s | accept msg/s | drain s | e2e msg/s | Postfix delay p50 / p99 ms | machine CPU busy |"
  echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${ROWS[@]}"; do echo "$r"; done
  echo
  if [ -n "${DELAYS_C:-}" ]; then
    echo "Run C, medians of Postfix's \`delays=a/b/c/d\` (a: before the queue manager, including the client's transmission; b: in the queue manager; c: connection set-up to the relay; d: transmission to the relay): $DELAYS_C."
    echo
  fi
  if [ -n "${LATENCY_D:-}" ]; then
    echo "Run D, acceptance latency as the Moat bench measures it — $LATENCY_D."
    echo
  fi
  echo "Run E, the load generator's own ceiling — $LATENCY_E."
  echo
  echo "- *accept s / msg/s*: wall time of the driver from start to its last reply, and messages / that time."
  echo "- *drain s*: from the start of the driver until smtp-sink has counted every message (Postfix runs only)."
  echo "- *Postfix delay*: the \`delay=\` Postfix logs per delivery: from the message's arrival (queue file"
  echo "  created during the SMTP transaction) to the relay's 250, i.e. end to end inside Postfix."
  echo "- *machine CPU busy*: all CPUs, whole machine, during the run (anything else running shows up here)."
  for n in "${NOTES[@]}"; do echo "- $n"; done
  echo
  echo "## Commands"
  echo
  echo "- this script: \`$COMMAND\` (from the repository root, as root)"
  echo "- A: \`$CMD_A\`"
  echo "- B: \`$CMD_B\`"
  echo "- E: \`$CMD_E\`"
  if [ -n "${CMD_C:-}" ]; then echo "- C: \`$CMD_C\`"; fi
  if [ -n "${CMD_D:-}" ]; then echo "- D: \`$CMD_D\`"; fi
  echo "- Postfix: $POSTFIX_STATUS; stock settings otherwise (compatibility_level 3.6, queue files fsynced, default_destination_concurrency_limit $(postconf -dh default_destination_concurrency_limit), in_flow_delay $(postconf -dh in_flow_delay)); 50 warm-up messages before C."
  echo "- Postfix does no virus scan and keeps no database here: it is the plain-MTA reference, not a like-for-like filter."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
  echo "| nproc | $(nproc) |"
  echo "| CPU model | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
  echo "| memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2/1024/1024 }' /proc/meminfo) |"
  echo "| kernel | $(uname -sr) |"
  echo "| node | $(node --version 2>/dev/null || echo n/a) |"
  echo "| postfix | $(postconf -h mail_version 2>/dev/null || echo n/a) |"
  echo "| load average before the run | $LOADAVG; $QUIET_NOTE |"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
echo "saved ${OUT#"$ROOT"/}" >&2
