# Real engines for the integration tests: PostgreSQL on 127.0.0.1 and a two-node Ray cluster on this
# machine. Sourced by .ci/run: `services_up` starts both and exports
#   LMTUNE_TEST_POSTGRES_URL=postgresql://lmtune@127.0.0.1:PORT/lmtune_test
#   LMTUNE_TEST_RAY_ADDRESS=127.0.0.1:PORT
# and `services_down` stops exactly what it started (by process group / data dir), also after a failure.
# Tests that need them are marked `services` and skipped when the variables are absent.

_svc_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
_svc_log() { echo "[services] $*" >&2; }

_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

postgres_up() {
  if [ -z "$(_pg_bin)" ]; then
    _svc_log "installing PostgreSQL (Debian package)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local bin; bin="$(_pg_bin)"
  PG_DIR="$(mktemp -d /tmp/lmtune-ci-pg.XXXXXX)"
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; as=(runuser -u postgres --); fi  # initdb refuses root
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U lmtune --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1
  PG_PORT="$(_svc_port)"
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=100 -c fsync=off" start >/dev/null
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop)
  "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U lmtune lmtune_test
  export LMTUNE_TEST_POSTGRES_URL="postgresql://lmtune@127.0.0.1:$PG_PORT/lmtune_test"
  _svc_log "PostgreSQL at $LMTUNE_TEST_POSTGRES_URL (data in $PG_DIR)"
}

# Each `ray start --block` runs in its own session, so its whole process group (GCS, raylet, workers)
# can be stopped without `ray stop`, which would stop every Ray on the machine. A private --temp-dir
# keeps other users' `ray.init()` from finding (and joining) this cluster.
ray_up() {
  local ray=.venv/bin/ray
  RAY_TMP="$(mktemp -d /tmp/lmtune-ci-ray.XXXXXX)"
  RAY_PORT="$(_svc_port)"
  # Token authentication with a token of this run only (clients that pass an explicit address need the mode set).
  export RAY_AUTH_MODE=token
  RAY_AUTH_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  export RAY_AUTH_TOKEN
  local common=(--block --node-ip-address=127.0.0.1 --num-cpus=1 --object-store-memory=100000000
                --disable-usage-stats)
  setsid "$ray" start --head --port="$RAY_PORT" --include-dashboard=false --temp-dir="$RAY_TMP" "${common[@]}" \
    >"$RAY_TMP/head.log" 2>&1 &
  RAY_PIDS=("$!")
  _ray_wait 1 || { tail -20 "$RAY_TMP/head.log" >&2; return 1; }
  setsid "$ray" start --address="127.0.0.1:$RAY_PORT" "${common[@]}" >"$RAY_TMP/node.log" 2>&1 &
  RAY_PIDS+=("$!")
  _ray_wait 2 || { tail -20 "$RAY_TMP/node.log" >&2; return 1; }
  export LMTUNE_TEST_RAY_ADDRESS="127.0.0.1:$RAY_PORT"
  _svc_log "Ray cluster at $LMTUNE_TEST_RAY_ADDRESS: 2 nodes, 1 CPU each"
}

_ray_wait() {  # until the cluster has $1 live nodes (60 s)
  local i
  for i in $(seq 60); do
    n=$(timeout 30 .venv/bin/python - "$RAY_PORT" 2>/dev/null <<'EOF'
import sys, ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
)
    [ "${n:-0}" -ge "$1" ] && return 0
    sleep 1
  done
  return 1
}

services_up() {
  postgres_up
  ray_up
}

services_down() {
  set +e  # runs as the EXIT trap: stop everything even when one step fails
  local pid i
  for pid in "${RAY_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null
  done
  for i in $(seq 20); do
    local alive=0
    for pid in "${RAY_PIDS[@]:-}"; do [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${RAY_PIDS[@]:-}"; do [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null; done
  RAY_PIDS=()
  if [ -n "${PG_STOP:-}" ]; then "${PG_STOP[@]}" >/dev/null 2>&1; PG_STOP=(); fi
  [ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
  [ -n "${RAY_TMP:-}" ] && rm -rf "$RAY_TMP"
  _svc_log "stopped PostgreSQL and the Ray cluster"
}
