# Shared by scripts/bench and scripts/bench-latency (sourced, not run): the tools, the release
# binaries, registries and processes that are cleaned up at exit, and measuring and checking
# copies. The sourcing script sets `set -euo pipefail`, parses its arguments, then calls
# bench_start.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'bench: %s\n' "$*" >&2; }
fail() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

# --- tools, binaries, work dir ---------------------------------------------------------------

declare -A registry_pid=() # name -> PID of a registry or proxy, stopped at exit
active_group=""            # process group of the command being waited on
work=""

# Checks the tools, builds the release binaries, makes the work dir and sets the cleanup.
bench_start() {
  command -v skopeo >/dev/null 2>&1 || fail "skopeo is not installed: run scripts/install-deps"
  command -v docker-registry >/dev/null 2>&1 || fail "docker-registry is not installed: run scripts/install-deps"
  command -v python3 >/dev/null 2>&1 || fail "python3 is not installed: run scripts/install-deps"
  command -v curl >/dev/null 2>&1 || fail "curl is not installed (apt-get install curl)"
  gnu_time=/usr/bin/time
  if ! "$gnu_time" -f '%e %M' -o /dev/null true 2>/dev/null; then
    # Bash's `time` keyword reports no peak RSS: the benchmark needs GNU time (Debian `time`).
    [[ $(id -u) -eq 0 ]] || fail "GNU time is missing: apt-get install time (as root)"
    say "GNU time is missing: apt-get install time"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends time >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends time >&2; } \
      || fail "apt-get install time failed"
  fi

  say "building release binaries (omx-ecr-helper, omx-fixture, omx-delay-proxy)"
  (cd "$repo" && cargo build --release --locked -p omx-cli --bin omx-ecr-helper -p omx-testenv --bin omx-fixture --bin omx-delay-proxy) >&2 \
    || fail "cargo build --release failed"
  target_dir=${CARGO_TARGET_DIR:-$repo/target}
  omx="$target_dir/release/omx-ecr-helper"
  fixture="$target_dir/release/omx-fixture"
  delay_proxy="$target_dir/release/omx-delay-proxy"
  skopeo_version=$(skopeo --version | awk '{print $3}')

  work=$(mktemp -d "${TMPDIR:-/tmp}/omx-bench.XXXXXX")
  export TMPDIR="$work/tmp" # omx-fixture's layouts land here, so cleanup removes them too
  # omx-ecr-helper's blob-location cache goes here, not into the user's ~/.cache: no run reads
  # what another benchmark (or the user) recorded, and cleanup removes it.
  export XDG_CACHE_HOME="$work/xdg-cache"
  mkdir -p "$TMPDIR"

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup() {
  local status=$? name pid
  trap - EXIT INT TERM
  if [[ -n "$active_group" ]]; then
    kill -TERM -- "-$active_group" 2>/dev/null || true
    for _ in {1..50}; do
      kill -0 -- "-$active_group" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$active_group" 2>/dev/null || true
  fi
  for name in "${!registry_pid[@]}"; do
    pid=${registry_pid[$name]}
    kill "$pid" 2>/dev/null || true
  done
  for name in "${!registry_pid[@]}"; do
    wait "${registry_pid[$name]}" 2>/dev/null || true
  done
  [[ -z "$work" ]] || rm -rf "$work"
  exit "$status"
}

# Runs a command in its own session (so cleanup can end it and its children as one group) and
# waits for it; `wait` stays interruptible, so Ctrl-C is handled at once. Returns its status.
run_grouped() {
  setsid "$@" &
  active_group=$!
  local status=0
  wait "$active_group" || status=$?
  active_group=""
  return "$status"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts an empty plain-HTTP registry named $1 with filesystem storage under $work/$1 and sets
# registry_host to its host:port. (Not called in $(...): the PID must be recorded in this shell.)
# With registry_access_log=1 it logs every request it answers (see requests_answered).
registry_host=""
start_registry() {
  local name=$1 dir="$work/$1" port
  port=$(free_port)
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: $([[ ${registry_access_log:-0} == 1 ]] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: '$dir/storage'
  maintenance:
    uploadpurging:
      enabled: false
health:
  storagedriver:
    enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 16 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(16))')
YAML
  setsid docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 </dev/null &
  registry_pid[$name]=$!
  local deadline=$((SECONDS + 20))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true) == 200 ]]; do
    kill -0 "${registry_pid[$name]}" 2>/dev/null \
      || fail "registry $name exited at start; log:"$'\n'"$(tail -n 20 "$dir/log")"
    ((SECONDS < deadline)) || fail "registry $name did not answer on 127.0.0.1:$port within 20s"
    sleep 0.1
  done
  registry_host=127.0.0.1:$port
}

# Requests registry $1 answered so far (it must log them: registry_access_log=1), read from
# distribution's access log, one combined-log-format line per request.
requests_answered() {
  grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$work/$1/log" || true
}

# Starts an omx-delay-proxy named $1 in front of host:port $2 (round trip $3 ms, bandwidth $4
# Mbit/s each way, 0 for none) and sets proxy_host to its host:port.
proxy_host=""
start_delay_proxy() {
  local name=$1 to=$2 rtt=$3 mbit=$4 out="$work/$1.port" rate=()
  ((mbit > 0)) && rate=(--mbit "$mbit")
  setsid "$delay_proxy" --to "$to" --rtt-ms "$rtt" "${rate[@]}" >"$out" 2>&1 </dev/null &
  registry_pid[$name]=$!
  local deadline=$((SECONDS + 10))
  until [[ -s "$out" ]]; do
    ((SECONDS < deadline)) || fail "delay proxy $name did not start"
    sleep 0.05
  done
  proxy_host=$(head -n 1 "$out")
}

# Stops registry $1 and deletes its storage.
stop_registry() {
  local name=$1 pid=${registry_pid[$1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "registry_pid[$name]"
  rm -rf "${work:?}/$name"
}

skopeo_copy=(skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false)

# Runs "$@ SRC DST" once per line of the pairs file $1, stopping at the first failure.
copy_each='set -euo pipefail; pairs=$1; shift; while read -r src dst; do "$@" "$src" "$dst"; done <"$pairs"'

# --- measuring and checking --------------------------------------------------------------------

# Manifest digest of docker://$1 as the registry serves it (skopeo asks for every media type).
manifest_digest() {
  local raw
  raw=$(skopeo inspect --raw --tls-verify=false "docker://$1") || return 1
  printf 'sha256:%s\n' "$(printf '%s' "$raw" | sha256sum | awk '{print $1}')"
}

# CPU seconds (user + system) process $1 has used so far.
process_cpu_seconds() {
  local stat
  stat=$(cat "/proc/$1/stat") || return 1
  # Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
  awk -v ticks="$clock_ticks" '{printf "%.2f", ($12 + $13) / ticks}' <<<"${stat##*) }"
}
clock_ticks=$(getconf CLK_TCK)

# The whole machine's CPU ticks so far (every process, this benchmark's and others'): all of
# them, those idle and those idle while a disk write or read was pending (iowait), from the
# `cpu` line of /proc/stat (proc(5): user nice system idle iowait irq softirq steal, then guest
# and guest_nice, which user and nice already count).
machine_ticks() {
  awk '/^cpu / {total = 0; for (i = 2; i <= 9; i++) total += $i; print total, $5 + $6, $6}' /proc/stat
}

# Runs a command under GNU time as part $1 ("scenario/tool") copying into registry $2, its
# output going to a log. Records "wall-seconds peak-RSS-KiB user-seconds system-seconds
# source-registry-CPU destination-registry-CPU machine-busy-% machine-waiting-on-disk-%" in
# $work/results/$1 (GNU time's figures cover the command and every process it waited for; the
# machine's shares cover all its cores over the run). Fails the benchmark if the command fails.
measure() {
  local id=$1 destination_name=$2
  shift 2
  local log="$work/logs/${id//\//_}.log" timing="$work/results/${id//\//_}"
  local source_pid=${registry_pid[source]} destination_pid=${registry_pid[$destination_name]}
  local source_before destination_before source_after destination_after
  mkdir -p "$work/logs" "$work/results"
  say "$id: running"
  source_before=$(process_cpu_seconds "$source_pid")
  destination_before=$(process_cpu_seconds "$destination_pid")
  local machine_before machine_after
  machine_before=$(machine_ticks)
  if ! run_grouped "$gnu_time" -f '%e %M %U %S' -o "$timing" "$@" >"$log" 2>&1 </dev/null; then
    fail "$id: the copy failed; last lines of its output:"$'\n'"$(tail -n 30 "$log")"
  fi
  source_after=$(process_cpu_seconds "$source_pid")
  destination_after=$(process_cpu_seconds "$destination_pid")
  machine_after=$(machine_ticks)
  local wall rss user system
  read -r wall rss user system <"$timing"
  awk -v sa="$source_after" -v sb="$source_before" -v da="$destination_after" -v db="$destination_before" \
    -v mb="$machine_before" -v ma="$machine_after" -v line="$wall $rss $user $system" 'BEGIN {
      split(mb, b, " "); split(ma, a, " "); total = a[1] - b[1]
      busy = total > 0 ? 100 * (1 - (a[2] - b[2]) / total) : 0
      disk = total > 0 ? 100 * (a[3] - b[3]) / total : 0
      printf "%s %.2f %.2f %.0f %.0f\n", line, sa - sb, da - db, busy, disk
    }' >"$timing"
  say "$id: $(awk '{printf "%.2f s, peak RSS %.1f MiB, CPU %.2f s (registries: source %.2f s, destination %.2f s); machine busy %s%%, waiting on disk %s%%", $1, $2 / 1024, $3 + $4, $5, $6, $7, $8}' "$timing")"
}

# Checks that every "source-ref destination-ref" pair in file $2 serves the same manifest digest
# (source digests are cached in $work/source-digests).
verify() {
  local id=$1 pairs=$2 src dst src_digest dst_digest checked=0
  while read -r src dst; do
    src_digest=$(grep -F "$src " "$work/source-digests" | awk '{print $2}' || true)
    [[ -n "$src_digest" ]] || fail "$id: no source digest recorded for $src"
    dst_digest=$(manifest_digest "$dst") || fail "$id: cannot read the manifest of $dst"
    [[ "$dst_digest" == "$src_digest" ]] \
      || fail "$id: digest differs for $dst: $dst_digest, source $src has $src_digest"
    checked=$((checked + 1))
  done <"$pairs"
  say "$id: $checked destination digest(s) equal the source's"
}

# Pushes a synthetic image $1:$2 (repository, tag) with omx-fixture, further arguments passed
# on, and records its digest as the registry serves it.
push_fixture() {
  local repository=$1 tag=$2 ref="$source/$1:$2" log="$work/logs/fixture.log" digest served
  shift 2
  mkdir -p "$work/logs"
  run_grouped "$fixture" push --registry "$source" --repo "$repository" --tag "$tag" \
    --insecure "$@" >"$log" 2>&1 </dev/null \
    || fail "omx-fixture push $ref failed:"$'\n'"$(tail -n 20 "$log")"
  digest=$(tail -n 1 "$log")
  served=$(manifest_digest "$ref") || fail "cannot read the manifest of $ref after pushing it"
  [[ "$served" == "$digest" ]] || fail "$ref: the source serves $served, omx-fixture pushed $digest"
  printf '%s %s\n' "$ref" "$served" >>"$work/source-digests"
}
