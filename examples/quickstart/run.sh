#!/usr/bin/env bash
# The quickstart: builds Warden and the example company's MCP servers, puts
# Warden in front of them, prints the endpoint and a ready agent token, and
# shows allowed and denied calls made with the official MCP SDK's client.
# Warden then keeps running until Ctrl-C; `--once` stops after the demo.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
once=0
[ "${1:-}" = "--once" ] && once=1

echo "==> building warden and the example MCP servers (the first build takes a few minutes)"
cargo build --quiet --bin warden --bin warden-example-mcp
export PATH="$root/target/debug:$PATH"

dir="$root/target/quickstart"
# A directory made from an older version of the example is made again.
if [ -f "$dir/warden.toml" ] && ! cmp -s examples/quickstart/warden.toml "$dir/warden.toml"; then
  rm -rf "$dir"
fi
if [ ! -f "$dir/warden.toml" ]; then
  echo "==> warden init $dir --example examples/quickstart"
  warden init "$dir" --example examples/quickstart
  warden --config "$dir/warden.toml" agent create support-assistant \
    --owner alice --purpose "answers customer questions"
fi
cd "$dir"

echo "==> warden serve (logs: $dir/warden.log)"
warden serve >>"$dir/warden.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "quickstart: warden exited:" >&2
    tail -n 20 "$dir/warden.log" >&2
    exit 1
  fi
  sleep 0.1
done

token="$(warden token issue --agent support-assistant --ttl 1h)"
cat <<INFO

Warden is up (TLS, with its own CA: trust $dir/keys/ca/bundle.pem).
  MCP endpoint (all upstreams): https://127.0.0.1:8080/mcp
  one upstream:                 https://127.0.0.1:8080/mcp/crm   (also docs, hr, mail)
  agent token (support-assistant, 1 h):
    $token

Point any MCP client at the endpoint with "Authorization: Bearer <token>".
Here is one (the official Rust SDK) calling through Warden:

INFO
warden-example-mcp demo https://127.0.0.1:8080/mcp "$token" --ca keys/ca/bundle.pem

echo
echo "==> the same agent with its own certificate instead of a token (mTLS)"
echo "    warden agent cert support-assistant --out agent   # key made here, cert from Warden's CA"
warden agent cert support-assistant --out agent --ttl 1h
echo "    POST /oauth/token grant_type=client_credentials over mTLS -> a token bound to the certificate"
warden-example-mcp demo https://127.0.0.1:8080/mcp --ca keys/ca/bundle.pem --cert agent/cert.pem --key agent/key.pem

echo
echo "==> warden audit tail -n 10 (one record per request, hash-chained)"
warden audit tail -n 10
echo "==> warden audit verify"
warden audit verify

if [ "$once" = 1 ]; then exit 0; fi
echo
echo "Warden keeps running (config: $dir/warden.toml, logs: $dir/warden.log). Press Ctrl-C to stop."
wait "$pid"
