#!/usr/bin/env bash
# Inspect and sanity-check the reseau test PKI produced by gen.sh (openssl CLI only, offline).
#
# Usage: bash certs/check.sh [DIR]      (DIR defaults to the directory holding this script)
#
# Prints subject / issuer / SAN / EKU / notAfter of every certificate, then checks that
#   - server, client, wronghost, ecdsa-cn chain to ca.pem (and other-client to other-ca.pem),
#   - server/client pass the sslserver/sslclient purpose checks,
#   - server matches localhost, 127.0.0.1 and ::1; wronghost and ecdsa-cn carry the names they should,
#   - untrusted.pem does not chain to ca.pem, other-client.pem does not, client.pem not to other-ca.pem,
#   - expired.pem fails with "certificate has expired" (and verifies when time checks are off),
#   - every certificate matches its private key.
# Exits 0 if every expectation holds, 1 otherwise.
set -euo pipefail

dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
cd "$dir"

names=(ca server client expired wronghost untrusted ecdsa-cn other-ca other-client)
failures=0

echo "openssl: $(openssl version)"
echo "dir:     $dir"
echo

for n in "${names[@]}"; do
    if [[ ! -s "$n.pem" || ! -s "$n.key" ]]; then
        echo "MISSING $n.pem / $n.key (run: bash certs/gen.sh)"
        failures=$((failures + 1))
        continue
    fi
    san="$(openssl x509 -in "$n.pem" -noout -ext subjectAltName 2>/dev/null | sed -n '2,$p' | sed 's/^ *//' | paste -sd' ')"
    eku="$(openssl x509 -in "$n.pem" -noout -ext extendedKeyUsage 2>/dev/null | sed -n '2,$p' | sed 's/^ *//' | paste -sd' ')"
    bc="$(openssl x509 -in "$n.pem" -noout -ext basicConstraints 2>/dev/null | sed -n '2,$p' | sed 's/^ *//' | paste -sd' ')"
    alg="$(openssl x509 -in "$n.pem" -noout -text | sed -n 's/^ *Public Key Algorithm: *//p' | head -n1)"
    printf '%s.pem\n' "$n"
    printf '  subject:   %s\n' "$(openssl x509 -in "$n.pem" -noout -subject | sed 's/^subject=//')"
    printf '  issuer:    %s\n' "$(openssl x509 -in "$n.pem" -noout -issuer | sed 's/^issuer=//')"
    printf '  key:       %s\n' "$alg"
    printf '  SAN:       %s\n' "${san:-(none)}"
    printf '  EKU:       %s\n' "${eku:-(none)}"
    printf '  basic:     %s\n' "${bc:-(none)}"
    printf '  notBefore: %s\n' "$(openssl x509 -in "$n.pem" -noout -startdate | sed 's/^notBefore=//')"
    printf '  notAfter:  %s\n' "$(openssl x509 -in "$n.pem" -noout -enddate | sed 's/^notAfter=//')"
done
echo

ok() { printf '  ok    %s\n' "$1"; }
bad() {
    printf '  FAIL  %s\n' "$1"
    [[ -n "${2:-}" ]] && printf '%s\n' "$2" | sed 's/^/          /'
    failures=$((failures + 1))
}

# expect_ok DESCRIPTION -- openssl verify args...
expect_ok() {
    local desc=$1 out
    shift
    if out="$(openssl verify "$@" 2>&1)"; then ok "$desc"; else bad "$desc" "$out"; fi
}

# expect_fail DESCRIPTION PATTERN -- openssl verify args...   (fails AND output matches PATTERN, ERE, case-insensitive)
expect_fail() {
    local desc=$1 pattern=$2 out
    shift 2
    if out="$(openssl verify "$@" 2>&1)"; then
        bad "$desc (unexpectedly verified)" "$out"
    elif grep -Eqi -- "$pattern" <<<"$out"; then
        ok "$desc: $(grep -Eio -- "$pattern" <<<"$out" | head -n1)"
    else
        bad "$desc (failed, but not with /$pattern/)" "$out"
    fi
}

echo "chains:"
expect_ok "server.pem chains to ca.pem (purpose sslserver)" -CAfile ca.pem -purpose sslserver server.pem
expect_ok "client.pem chains to ca.pem (purpose sslclient)" -CAfile ca.pem -purpose sslclient client.pem
expect_ok "ecdsa-cn.pem chains to ca.pem (purpose sslserver)" -CAfile ca.pem -purpose sslserver ecdsa-cn.pem
expect_ok "wronghost.pem chains to ca.pem (purpose sslserver)" -CAfile ca.pem -purpose sslserver wronghost.pem
expect_ok "other-client.pem chains to other-ca.pem (purpose sslclient)" -CAfile other-ca.pem -purpose sslclient other-client.pem
expect_fail "untrusted.pem does not chain to ca.pem" "self[- ]signed certificate" -CAfile ca.pem untrusted.pem
expect_fail "other-client.pem does not chain to ca.pem" "unable to get local issuer certificate" -CAfile ca.pem other-client.pem
expect_fail "client.pem does not chain to other-ca.pem" "unable to get local issuer certificate" -CAfile other-ca.pem client.pem
expect_fail "expired.pem is expired" "certificate has expired" -CAfile ca.pem expired.pem
expect_ok "expired.pem chains to ca.pem when time checks are off" -no_check_time -CAfile ca.pem expired.pem
expect_fail "client.pem is not a TLS server cert" "(unsupported|unsuitable) certificate purpose" -CAfile ca.pem -purpose sslserver client.pem
expect_fail "server.pem is not a TLS client cert" "(unsupported|unsuitable) certificate purpose" -CAfile ca.pem -purpose sslclient server.pem

echo "names:"
expect_ok "server.pem matches DNS localhost" -CAfile ca.pem -verify_hostname localhost server.pem
expect_ok "server.pem matches IP 127.0.0.1" -CAfile ca.pem -verify_ip 127.0.0.1 server.pem
expect_ok "server.pem matches IP ::1" -CAfile ca.pem -verify_ip ::1 server.pem
expect_fail "server.pem does not match example.com" "hostname mismatch" -CAfile ca.pem -verify_hostname example.com server.pem
expect_fail "wronghost.pem does not match localhost" "hostname mismatch" -CAfile ca.pem -verify_hostname localhost wronghost.pem
expect_fail "wronghost.pem does not match 127.0.0.1" "IP address mismatch" -CAfile ca.pem -verify_ip 127.0.0.1 wronghost.pem
expect_ok "wronghost.pem matches wrong.example" -CAfile ca.pem -verify_hostname wrong.example wronghost.pem
if openssl x509 -in ecdsa-cn.pem -noout -ext subjectAltName 2>/dev/null | grep -q .; then
    bad "ecdsa-cn.pem has no subjectAltName"
else
    ok "ecdsa-cn.pem has no subjectAltName (CN-only)"
fi
if openssl x509 -in ecdsa-cn.pem -noout -subject -nameopt RFC2253 | grep -q 'CN=localhost'; then
    ok "ecdsa-cn.pem has CN=localhost"
else
    bad "ecdsa-cn.pem has CN=localhost"
fi
if openssl x509 -in ecdsa-cn.pem -noout -text | grep -q 'id-ecPublicKey'; then
    ok "ecdsa-cn.pem has an ECDSA key"
else
    bad "ecdsa-cn.pem has an ECDSA key"
fi
# Informational: OpenSSL's X509_check_host falls back to the subject CN when there is no DNS SAN,
# unless X509_CHECK_FLAG_NEVER_CHECK_SUBJECT is set; the CLI cannot set that flag.
if openssl verify -CAfile ca.pem -verify_hostname localhost ecdsa-cn.pem >/dev/null 2>&1; then
    echo "  info  ecdsa-cn.pem passes 'openssl verify -verify_hostname localhost' via OpenSSL's CN fallback;"
    echo "        rejecting it (Go: 'legacy Common Name field') needs X509_CHECK_FLAG_NEVER_CHECK_SUBJECT"
fi

echo "keys:"
for n in "${names[@]}"; do
    [[ -s "$n.pem" && -s "$n.key" ]] || continue
    if [[ "$(openssl x509 -in "$n.pem" -noout -pubkey)" == "$(openssl pkey -in "$n.key" -pubout 2>/dev/null)" ]]; then
        ok "$n.key matches $n.pem"
    else
        bad "$n.key matches $n.pem"
    fi
done

echo
if ((failures == 0)); then
    echo "check.sh: all expectations hold"
else
    echo "check.sh: $failures expectation(s) FAILED"
    exit 1
fi
