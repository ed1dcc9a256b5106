#!/usr/bin/env bash
# Makes a private CA and a server certificate signed by it, for kvstream's
# TLS (--tls-cert/--tls-key) on a test or private deployment. The tests
# (tests/server/auth_tls_test.cc) use this same script.
#
#   deploy/make-certs.sh OUT_DIR [HOST_NAME ...]
#
# Writes OUT_DIR/ca.pem (give it to clients: kvstream --tls-ca), ca.key,
# server.pem and server.key (give them to the server). The server
# certificate names localhost, 127.0.0.1 and every HOST_NAME given (e.g. the
# compose service name "kvstream"), so the container's HEALTHCHECK and
# clients on the compose network both verify it. Valid for 365 days.
set -euo pipefail
out="${1:?usage: make-certs.sh OUT_DIR [HOST_NAME ...]}"
shift
mkdir -p "$out"
cd "$out"
san="DNS:localhost,IP:127.0.0.1"
for h in "$@"; do san="$san,DNS:$h"; done
# P-256 keys: quick to make, and every gRPC TLS stack accepts them.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=kvstream private CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=${1:-localhost}" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
  "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
# The key is read by the server's user inside the container (uid 10001).
chmod 644 server.key
echo "wrote $out/ca.pem, $out/server.pem, $out/server.key (SAN $san)"
