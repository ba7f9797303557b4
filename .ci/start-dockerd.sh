#!/usr/bin/env bash
# Start the Docker engine in the background if it is not answering, and wait until it does.
# Used by .ci/run and `make demo` (as root). Idempotent.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "dockerd is not installed (apt-get install -y docker.io)" >&2; exit 1; }
mkdir -p /var/log
# setsid: its own session, so stopping the shell job that started it does not stop the engine.
setsid nohup dockerd >/var/log/edgeplane-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 0.5
done
echo "dockerd did not answer within 60 s; see /var/log/edgeplane-dockerd.log" >&2
exit 1
