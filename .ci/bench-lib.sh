# Shell helpers of the benchmark scripts (.ci/bench-broker, .ci/bench-backlog,
# .ci/bench-ab): sourced, not run.

# free_port: a port nothing listens on now (127.0.0.1).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
# wait_port PORT: waits up to 30 s for PORT to accept a connection.
wait_port() { for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# cg_make NAME BYTES: makes a memory cgroup limited to BYTES and prints its
# directory: cgroup v2 when /sys/fs/cgroup has the memory controller, else
# v1 under this process's memory cgroup. Fails when neither can be made.
cg_make() {
  local name=$1 bytes=$2 d rel
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    d=/sys/fs/cgroup/$name
    if mkdir -p "$d" 2>/dev/null && [ -f "$d/memory.max" ] && echo "$bytes" >"$d/memory.max"; then
      echo 0 >"$d/memory.swap.max" 2>/dev/null || true
      echo "$d"; return 0
    fi
    rmdir "$d" 2>/dev/null || true
  fi
  rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
  d=/sys/fs/cgroup/memory${rel%/}/$name
  if [ -d /sys/fs/cgroup/memory ] && mkdir -p "$d" 2>/dev/null && [ -f "$d/memory.limit_in_bytes" ] && echo "$bytes" >"$d/memory.limit_in_bytes"; then
    echo 0 >"$d/memory.swappiness" 2>/dev/null || true
    echo "$d"; return 0
  fi
  rmdir "$d" 2>/dev/null || true
  echo "no writable memory cgroup (v2 or v1; run as root): the memory-budget runs cannot run" >&2
  return 1
}
# cg_ooms DIR: how many processes the kernel OOM-killed in the cgroup.
cg_ooms() {
  { grep -h '^oom_kill ' "$1/memory.events" "$1/memory.oom_control" 2>/dev/null || echo "oom_kill 0"; } | awk '{n+=$2} END {print n+0}'
}
# cg_peak DIR: the cgroup's peak charge in bytes (v2 memory.peak, v1
# memory.max_usage_in_bytes; page cache included), empty when not kept.
cg_peak() { { cat "$1/memory.peak" "$1/memory.max_usage_in_bytes" 2>/dev/null || true; } | head -1; }
