#!/bin/bash
# The first process of every agentcap container (bind-mounted read-only, so editing it rebuilds nothing).
#   AGENTCAP_STDOUT / AGENTCAP_STDERR  files (/agentcap/io/…) that get the agent's output
#   AGENTCAP_FORWARDS                  "PORT=SOCKET …": a socat per endpoint on 127.0.0.1:PORT → SOCKET (/agentcap/sockets/…)
#   AGENTCAP_PATH_PREPEND              dirs of tools (mounted read-only) put first on PATH
# The container has no network but its loopback; these forwarders are its only way out.
set -u
if [ -n "${AGENTCAP_PATH_PREPEND:-}" ]; then export PATH="$AGENTCAP_PATH_PREPEND:$PATH"; fi
exec </dev/null >"${AGENTCAP_STDOUT:-/dev/stdout}" 2>"${AGENTCAP_STDERR:-/dev/stderr}"
for fwd in ${AGENTCAP_FORWARDS:-}; do
    socat "TCP-LISTEN:${fwd%%=*},bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:${fwd#*=}" &
done
# ready when every port listens (read from /proc: probing with a connection would reach the proxy)
for fwd in ${AGENTCAP_FORWARDS:-}; do
    hex=$(printf ':%04X ' "${fwd%%=*}")
    for _ in $(seq 500); do
        grep -q "0100007F${hex}00000000:0000 0A" /proc/net/tcp && continue 2
        sleep 0.01
    done
    echo "agentcap: the forwarder for port ${fwd%%=*} did not start" >&2
    exit 125
done
"$@"
