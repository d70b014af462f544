#!/usr/bin/env bash
# Makes sure the local PostgreSQL (127.0.0.1:5432, trust auth) is up; starts the cluster if it is not.
set -euo pipefail
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ready; then echo "postgres: up"; exit 0; fi
if [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
for _ in $(seq 1 30); do ready && { echo "postgres: started"; exit 0; }; sleep 1; done
echo "postgres: not reachable on 127.0.0.1:5432 (is the postgresql package installed?)" >&2
exit 1
