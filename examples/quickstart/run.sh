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
if [ -f "$dir/warden.toml" ] && { ! cmp -s examples/quickstart/warden.toml "$dir/warden.toml" ||
  ! diff -rq examples/quickstart/policies "$dir/policies" >/dev/null 2>&1; }; then
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

mail='{"to":"bob@example.com","subject":"Your ticket","body":"Fixed."}'
echo
echo "==> the mail was held for a human: warden approvals list"
warden approvals list
id="$(warden approvals list | awk 'NR > 1 && $4 == "mail.send" { print $1; exit }')"
if ! warden user list | awk '{ print $1 }' | grep -qx carol; then
  warden user create carol --role approver
fi

if [ "$once" = 1 ]; then
  echo "==> an approver consents (in the console, or here: warden approvals approve $id --as carol)"
  warden approvals approve "$id" --as carol --reason "checked the ticket"
  echo "==> the agent retries the same call: it runs, once"
  warden-example-mcp call https://127.0.0.1:8080/mcp "$token" --ca keys/ca/bundle.pem mail.send "$mail"
  echo "==> and once only: the same call again needs a new approval"
  warden-example-mcp call https://127.0.0.1:8080/mcp "$token" --ca keys/ca/bundle.pem mail.send "$mail" || true
fi

echo
echo "==> warden audit tail -n 10 (one record per request and decision, hash-chained)"
warden audit tail -n 10
echo "==> warden audit checkpoint (signed; the gateway also signs one every 10 s)"
warden audit checkpoint
echo "==> warden audit prove 1 (record 1 is in that signed tree)"
warden audit prove 1
echo "==> warden audit verify (every record, the Merkle tree, every checkpoint signature)"
warden audit verify

if [ "$once" = 1 ]; then exit 0; fi
link="$(warden user login-link carol --ttl 1h 2>/dev/null)"
cat <<NEXT

The mail above waits for an approver (approval $id). To decide it in the
web console, open this one-time link in a browser and sign in as carol:
  $link
(or give carol a password: warden --config $dir/warden.toml user password carol,
then sign in at http://127.0.0.1:8081/console). Approve the mail, then let the
agent retry the same call; it is sent once:
  PATH=$root/target/debug:\$PATH warden-example-mcp call https://127.0.0.1:8080/mcp \\
    "$token" --ca $dir/keys/ca/bundle.pem mail.send '$mail'

Warden keeps running (config: $dir/warden.toml, logs: $dir/warden.log). Press Ctrl-C to stop.
NEXT
wait "$pid"
