#!/usr/bin/env bash
# A development signing setup for skytime bundles, made once:
#
#   ota/dev-ca.sh DIR [NAME]
#
# leaves in DIR (nothing is replaced when DIR/ca.pem exists):
#   ca.pem       the CA certificate: the keyring an image built with it trusts
#   ca.key       its key (0600)
#   signing.pem  the signing certificate (codeSigning extended key usage,
#                which system.conf's check-purpose=codesign requires)
#   signing.key  its key (0600)
#
# RSA keys, so that signatures are deterministic (same bundle bytes for the
# same inputs). Validity from 2020-01-01 to 2099-12-31: the appliance has no
# RTC and may check a bundle before its clock is set (systemd starts the
# clock at its build date, never before 2020). NAME (default "skytime
# development") goes into the certificates' common names; tests use another
# NAME for "a CA the appliance does not trust". Never commit DIR.
set -euo pipefail

dir=${1:?usage: dev-ca.sh DIR [NAME]}
name=${2:-skytime development}

if [ -f "$dir/ca.pem" ]; then
    exit 0
fi
command -v openssl >/dev/null || { echo "dev-ca.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }

parent=$(dirname "$dir")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.dev-ca.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

cat > "$work/ca.cnf" <<'EOF'
[ca]
default_ca = dev
[dev]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_signing]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

(
    cd "$work"
    : > index.txt
    echo 01 > serial
    dates=(-startdate 20200101000000Z -enddate 20991231235959Z)
    openssl genrsa -out ca.key 3072 2>/dev/null
    openssl req -new -config ca.cnf -key ca.key -subj "/CN=$name CA" -out ca.csr
    openssl ca -batch -notext -config ca.cnf -selfsign -keyfile ca.key -in ca.csr \
        -extensions v3_ca "${dates[@]}" -out ca.pem 2>/dev/null
    openssl genrsa -out signing.key 3072 2>/dev/null
    openssl req -new -config ca.cnf -key signing.key -subj "/CN=$name bundle signing" -out signing.csr
    openssl ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key -in signing.csr \
        -extensions v3_signing "${dates[@]}" -out signing.pem 2>/dev/null
    openssl verify -CAfile ca.pem signing.pem >/dev/null
)

mkdir "$work/out"
for f in ca.pem ca.key signing.pem signing.key; do
    mv "$work/$f" "$work/out/$f"
done
chmod 0644 "$work/out/ca.pem" "$work/out/signing.pem"
chmod 0600 "$work/out/ca.key" "$work/out/signing.key"
chmod 0755 "$work/out"
# Another run may have finished first: keep the first.
mv -T "$work/out" "$dir" 2>/dev/null || [ -f "$dir/ca.pem" ]
echo "dev-ca.sh: development CA and signing certificate in $dir" >&2
