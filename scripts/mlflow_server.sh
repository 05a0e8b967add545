#!/usr/bin/env bash
# Start an MLflow tracking server for linreg_lab: a database backend and a served artifact store.
#
#   scripts/mlflow_server.sh [--host 127.0.0.1] [--port 5000] [--backend-store-uri URI]
#                            [--artifacts-destination DIR] [--allowed-hosts HOSTS] [--workers N] [-- MLFLOW_ARGS...]
#
# Defaults: 127.0.0.1:5000 (this machine only), sqlite:///$PWD/mlflow-server.db, artifacts in $PWD/mlartifacts.
# A host beyond loopback (e.g. 0.0.0.0) is refused unless --allowed-hosts names the Host headers clients
# will send (MLflow's DNS-rebinding protection). For a lab: --backend-store-uri postgresql://USER:PASS@DBHOST/mlflow
# (see README). Runs then point at it with MLFLOW_TRACKING_URI=http://HOST:PORT.
set -euo pipefail

host=127.0.0.1
port=5000
backend="sqlite:///$PWD/mlflow-server.db"
artifacts="$PWD/mlartifacts"
allowed=""
workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --backend-store-uri) backend=$2; shift 2 ;;
    --artifacts-destination) artifacts=$2; shift 2 ;;
    --allowed-hosts) allowed=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "mlflow_server.sh: error: unknown option $1; allowed: --host --port --backend-store-uri" \
            "--artifacts-destination --allowed-hosts --workers, then -- and mlflow server options" >&2; exit 2 ;;
  esac
done

case "$host" in
  127.*|localhost|::1) ;;
  *) if [ -z "$allowed" ]; then
       echo "mlflow_server.sh: error: --host $host listens beyond this machine; add --allowed-hosts with the" \
            "host names clients use (e.g. --allowed-hosts mlflow.lab.example:$port)" >&2
       exit 2
     fi ;;
esac

mkdir -p "$artifacts"
args=(--host "$host" --port "$port" --backend-store-uri "$backend" --serve-artifacts
      --artifacts-destination "$artifacts" --workers "$workers")
[ -n "$allowed" ] && args+=(--allowed-hosts "$allowed")
exec mlflow server "${args[@]}" "$@"
