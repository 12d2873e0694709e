#!/usr/bin/env bash
# Proves that the end-to-end verify names the link that broke. On a converged `default` scenario
# (`molecule converge -s default`), for each link: break it, run `molecule verify -s default`,
# check that verify fails with the message naming that link, repair the link, and go on.
#
#   molecule/default/break_links.sh          # from the repository root, venv on PATH
#
# Links: llm_api stopped, a wrong provider key, the key-auth plugin deleted from Kong. Ends with a
# clean verify run, so the stack is left as it was found. Exits non-zero at the first link whose
# breakage verify does not report as expected.
set -uo pipefail
cd "$(dirname "$0")/../.."
export COLUMNS=400 # molecule wraps long lines; the messages are matched on one line
export ANSIBLE_NOCOLOR=1

gateway=e2e-gateway
llm=e2e-llm
provider=e2e-provider
log=$(mktemp)
trap 'rm -f "$log"' EXIT

in_container() { podman exec "$1" sh -c "$2"; }

# expect_failure LINK MESSAGE: verify must fail, and its output must contain MESSAGE.
expect_failure() {
  echo "=== break: $1"
  if molecule verify -s default >"$log" 2>&1; then
    echo "FAIL: verify passed although $1" >&2
    exit 1
  fi
  if ! grep -qF -- "$2" "$log"; then
    echo "FAIL: verify failed without saying '$2' ($1); its last lines:" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  echo "ok: verify failed with: $(grep -oF -- "$2" "$log" | head -1)"
}

admin_api() { # METHOD PATH: a request to Kong's Admin API (loopback only) on the gateway host
  in_container "$gateway" "python3 -c 'import sys, urllib.request as u
r = u.Request(\"http://127.0.0.1:8001\" + sys.argv[2], method=sys.argv[1])
print(u.urlopen(r).read().decode())' $1 $2"
}

# 1. llm_api stopped.
in_container "$llm" "systemctl stop llm-api"
expect_failure "llm_api is stopped" "llm_api unreachable behind Kong"
in_container "$llm" "systemctl start llm-api"
# Wait until llm_api is ready again (asked from its own host, which its firewall admits).
in_container "$llm" "for i in \$(seq 120); do python3 -c 'import socket, urllib.request as u
u.urlopen(\"http://%s:8080/health/ready\" % socket.gethostbyname(socket.gethostname()))' 2>/dev/null && exit 0
sleep 1; done; exit 1" || { echo "FAIL: llm_api did not come back" >&2; exit 1; }

# 2. A wrong provider key: the provider now expects another key than the one llm_api sends.
in_container "$provider" "cp /etc/default/fake-provider /etc/default/fake-provider.orig &&
  echo E2E_PROVIDER_API_KEY=sk-rotated-at-the-provider >/etc/default/fake-provider &&
  systemctl restart fake-provider && sleep 2"
expect_failure "the provider key is wrong" "provider rejected llm_api's credentials"
in_container "$provider" "mv /etc/default/fake-provider.orig /etc/default/fake-provider &&
  systemctl restart fake-provider && sleep 2"

# 3. The key-auth plugin deleted from Kong (with PostgreSQL: through the Admin API); converge
# puts it back, as it would for a user.
plugin_id=$(admin_api GET /plugins | python3 -c \
  'import json, sys; print(next(p["id"] for p in json.load(sys.stdin)["data"] if p["name"] == "key-auth"))')
admin_api DELETE "/plugins/$plugin_id" >/dev/null
expect_failure "the key-auth plugin is deleted" "key-auth plugin missing: request without key was not rejected"
echo "=== repair: molecule converge -s default"
molecule converge -s default >"$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }

echo "=== repaired: verify must pass again"
molecule verify -s default >"$log" 2>&1 || { echo "FAIL: verify after repair" >&2; tail -40 "$log" >&2; exit 1; }
echo "ok: every broken link was named by verify; the stack verifies again"
