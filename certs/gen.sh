#!/usr/bin/env bash
# Generate the reseau test PKI with the `openssl` CLI only.
#
# Usage: bash certs/gen.sh [--force] [OUTDIR]
#
#   OUTDIR   where to write the files (default: the directory holding this script).
#   --force  regenerate everything even if a complete, consistent set already exists
#            (RESEAU_CERTS_FORCE=1 in the environment does the same).
#
# Idempotent: if every file already exists and the set is consistent (chains verify,
# every certificate matches its key), nothing is touched. Otherwise the whole set is
# rebuilt in a private temp dir and only then moved into OUTDIR, so a failed run
# never leaves a half-written mix of old and new files.
#
# Validity windows are fixed dates, not "now + N days", so they do not depend on
# the clock of the machine that generated them:
#   valid certificates:  2020-01-01 00:00:00Z .. 2126-01-01 00:00:00Z (GeneralizedTime)
#   expired.pem:         2020-01-01 00:00:00Z .. 2020-01-02 00:00:00Z (expired by construction)
# `openssl x509 -req -not_before/-not_after` only exist from OpenSSL 3.4, so every
# certificate is issued with `openssl ca -startdate/-enddate` (`-selfsign` for the
# self-signed ones) using a throwaway config and database in the temp dir. This works
# with OpenSSL 1.1.1 and every 3.x.
set -euo pipefail

NOT_BEFORE=20200101000000Z
NOT_AFTER=21260101000000Z
EXPIRED_NOT_BEFORE=20200101000000Z
EXPIRED_NOT_AFTER=20200102000000Z

force="${RESEAU_CERTS_FORCE:-0}"
outdir=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "gen.sh: unknown option: $arg" >&2
            exit 2
            ;;
        *)
            if [[ -n "$outdir" ]]; then
                echo "gen.sh: more than one output directory given" >&2
                exit 2
            fi
            outdir="$arg"
            ;;
    esac
done
if [[ -z "$outdir" ]]; then
    outdir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

command -v openssl >/dev/null 2>&1 || {
    echo "gen.sh: the openssl CLI is required" >&2
    exit 1
}

names=(ca server client expired wronghost untrusted ecdsa-cn other-ca other-client)
files=()
for n in "${names[@]}"; do files+=("$n.pem" "$n.key"); done

# ---------------------------------------------------------------------------
# Idempotence: keep an existing, consistent set.
# ---------------------------------------------------------------------------
existing_set_ok() {
    local f n
    for f in "${files[@]}"; do
        [[ -s "$outdir/$f" ]] || return 1
    done
    (
        cd "$outdir"
        openssl verify -CAfile ca.pem server.pem client.pem wronghost.pem ecdsa-cn.pem >/dev/null 2>&1 || exit 1
        openssl verify -CAfile other-ca.pem other-client.pem >/dev/null 2>&1 || exit 1
        openssl verify -no_check_time -CAfile ca.pem expired.pem >/dev/null 2>&1 || exit 1
        for n in "${names[@]}"; do
            [[ "$(openssl x509 -in "$n.pem" -noout -pubkey)" == "$(openssl pkey -in "$n.key" -pubout)" ]] || exit 1
        done
    )
}

if [[ "$force" != 1 ]] && existing_set_ok; then
    echo "gen.sh: test PKI in $outdir is complete and consistent; nothing to do (use --force to regenerate)"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/reseau-certs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# Minimal configs so nothing depends on the system openssl.cnf.
cat >req.cnf <<'EOF'
[req]
distinguished_name = dn
prompt             = no
[dn]
CN = placeholder
EOF

mkdir -p db/newcerts
: >db/index.txt
cat >ca.cnf <<EOF
[ca]
default_ca = testca

[testca]
dir              = $work/db
database         = \$dir/index.txt
new_certs_dir    = \$dir/newcerts
serial           = \$dir/serial
default_md       = sha256
policy           = policy_any
unique_subject   = no
email_in_dn      = no
copy_extensions  = none

[policy_any]
organizationName = optional
commonName       = supplied

[v3_ca]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[v3_server_rsa]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_client_rsa]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_server_ec]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_client_ec]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_wronghost]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:wrong.example
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_cn_only]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[v3_untrusted]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
EOF

log() { printf 'gen.sh: %s\n' "$*"; }

genkey() {
    case "$2" in
        ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -pkeyopt ec_param_enc:named_curve -out "$1.key" 2>/dev/null ;;
        rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null ;;
    esac
}

# issue NAME KEYTYPE SUBJECT EXT_SECTION ISSUER|self NOT_BEFORE NOT_AFTER
issue() {
    local name=$1 keytype=$2 subject=$3 ext=$4 issuer=$5 start=$6 end=$7 out
    log "$name: $keytype, $subject, [$ext], issuer=$issuer, $start .. $end"
    genkey "$name" "$keytype"
    openssl req -config req.cnf -new -sha256 -key "$name.key" -subj "$subject" -out "$name.csr"
    # Random positive 128-bit serial (top nibble 1..7 keeps it positive and 16 bytes long).
    printf '%x%s\n' $((RANDOM % 7 + 1)) "$(openssl rand -hex 15)$(openssl rand -hex 1 | cut -c1)" >db/serial
    if [[ "$issuer" == self ]]; then
        set -- -selfsign -keyfile "$name.key"
    else
        set -- -cert "$issuer.pem" -keyfile "$issuer.key"
    fi
    if ! out="$(openssl ca -config ca.cnf -batch -notext -md sha256 "$@" \
        -in "$name.csr" -out "$name.pem" -startdate "$start" -enddate "$end" \
        -extensions "$ext" 2>&1)"; then
        printf '%s\n' "$out" >&2
        echo "gen.sh: openssl ca failed for $name" >&2
        exit 1
    fi
}

# --- the test CA (EC P-256) and a second, unrelated CA ---------------------------
issue ca           ec  "/O=reseau tests/CN=reseau test CA"         v3_ca         self     "$NOT_BEFORE" "$NOT_AFTER"
issue other-ca     ec  "/O=reseau tests/CN=reseau other test CA"   v3_ca         self     "$NOT_BEFORE" "$NOT_AFTER"
# --- leaves signed by the test CA -------------------------------------------------
issue server       rsa "/O=reseau tests/CN=localhost"              v3_server_rsa ca       "$NOT_BEFORE" "$NOT_AFTER"
issue client       rsa "/O=reseau tests/CN=reseau-test-client"     v3_client_rsa ca       "$NOT_BEFORE" "$NOT_AFTER"
issue expired      ec  "/O=reseau tests/CN=localhost"              v3_server_ec  ca       "$EXPIRED_NOT_BEFORE" "$EXPIRED_NOT_AFTER"
issue wronghost    ec  "/O=reseau tests/CN=wrong.example"          v3_wronghost  ca       "$NOT_BEFORE" "$NOT_AFTER"
issue ecdsa-cn     ec  "/O=reseau tests/CN=localhost"              v3_cn_only    ca       "$NOT_BEFORE" "$NOT_AFTER"
# --- self-signed leaf that no CA vouches for --------------------------------------
issue untrusted    ec  "/O=reseau tests (untrusted)/CN=localhost"  v3_untrusted  self     "$NOT_BEFORE" "$NOT_AFTER"
# --- client leaf signed by the other CA -------------------------------------------
issue other-client ec  "/O=reseau tests/CN=reseau-test-other-client" v3_client_ec other-ca "$NOT_BEFORE" "$NOT_AFTER"

# --- sanity checks before publishing ----------------------------------------------
openssl verify -CAfile ca.pem server.pem client.pem wronghost.pem ecdsa-cn.pem >/dev/null
openssl verify -CAfile other-ca.pem other-client.pem >/dev/null
openssl verify -no_check_time -CAfile ca.pem expired.pem >/dev/null
if openssl verify -CAfile ca.pem expired.pem >/dev/null 2>&1; then
    echo "gen.sh: expired.pem unexpectedly verifies" >&2
    exit 1
fi
if openssl verify -CAfile ca.pem untrusted.pem >/dev/null 2>&1; then
    echo "gen.sh: untrusted.pem unexpectedly verifies against ca.pem" >&2
    exit 1
fi

# --- publish -------------------------------------------------------------------------
chmod 0644 "${files[@]}"
for f in "${files[@]}"; do
    mv -f "$f" "$outdir/$f"
done
log "wrote test PKI to $outdir ($(openssl version | cut -d' ' -f1-2))"
