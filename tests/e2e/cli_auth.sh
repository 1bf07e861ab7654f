#!/usr/bin/env bash
# cli_auth.sh - `sluice auth token|inspect|rules` end to end: a token issued
# by the CLI is accepted by inspect with the same secret and refused with
# another; bad arguments exit 2; RS256 with openssl-made keys; a rule file
# is listed in evaluation order and a broken one is refused naming file:line.
set -euo pipefail
S=${SLUICE:?set SLUICE to the sluice binary}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "cli_auth: $*" >&2; exit 1; }

printf 'an-hs256-secret-of-more-than-32-bytes\n' >"$T/secret"
tok=$("$S" auth token --id ada --scope read --scope write --expiry 24h --secret-file "$T/secret")
[ "$(tr -cd . <<<"$tok" | wc -c)" = 2 ] || fail "token is not a JWT: $tok"
out=$("$S" auth inspect "$tok" --secret-file "$T/secret")
grep -qx 'id: ada' <<<"$out" || fail "inspect: $out"
grep -qx 'scopes: read write' <<<"$out" || fail "inspect scopes: $out"
SLUICE_AUTH_SECRET=another-secret-of-more-than-32-bytes-long \
  "$S" auth inspect "$tok" 2>"$T/err" && fail "a token of another secret was accepted"
grep -q refused "$T/err" || fail "no reason given: $(cat "$T/err")"

rc=0; "$S" auth token --scope x --secret-file "$T/secret" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "missing --id exited $rc"
rc=0; "$S" auth token --id a --expiry soon --secret-file "$T/secret" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "bad --expiry exited $rc"
for e in 3000000000000d 40000d 1000000000000h; do # over 100 years once the unit multiplies
  rc=0; "$S" auth token --id a --expiry "$e" --secret-file "$T/secret" 2>/dev/null || rc=$?
  [ "$rc" = 2 ] || fail "--expiry $e (over 100 years) exited $rc"
done
rc=0; "$S" auth token --id a 2>/dev/null </dev/null || rc=$?
[ "$rc" = 2 ] || fail "no secret exited $rc"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/k.pem" 2>/dev/null
openssl pkey -in "$T/k.pem" -pubout -out "$T/k.pub"
tok=$("$S" auth token --id svc --type service --alg RS256 --private-key "$T/k.pem" --public-key "$T/k.pub")
"$S" auth inspect "$tok" --alg RS256 --public-key "$T/k.pub" | grep -qx 'type: service' ||
  fail "RS256 token not accepted"
"$S" auth inspect "$tok" --secret-file "$T/secret" 2>/dev/null && fail "RS256 token accepted as HS256"

cat >"$T/rules.json" <<'J'
[{"id": "public-health", "scope": "", "resource": {"type": "service", "name": "*", "endpoint": "Health.*"},
  "access": "grant", "priority": 100},
 {"id": "users", "scope": "*", "resource": {"type": "service", "name": "greeter", "endpoint": "*"},
  "access": "grant"}]
J
out=$("$S" auth rules --rules "$T/rules.json")
[ "$(sed -n 2p <<<"$out" | awk '{print $NF}')" = public-health ] || fail "rules order: $out"
[ "$(sed -n 3p <<<"$out" | awk '{print $NF}')" = users ] || fail "rules order: $out"
printf '[\n{"id": "x",\n "scope": }]\n' >"$T/bad.json"
"$S" auth rules --rules "$T/bad.json" 2>"$T/err" && fail "a broken rule file was listed"
grep -q "bad.json:3:" "$T/err" || fail "error does not name file:line: $(cat "$T/err")"
echo "cli_auth: ok"
