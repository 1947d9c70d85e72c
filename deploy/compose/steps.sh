#!/bin/sh
# The steps of the compose deployment (deploy/compose.yaml, docs/DEPLOY.md): every container of
# it runs one, as the image's non-root user on a read-only root file system.
#
#   ca           the auditor's CA: makes the CA, certifies the coordinator and the auditor, then
#                signs each company's certificate request; the CA's key stays in its volume
#   company      a company: makes its own key and request, publishes the request and its key's
#                fingerprint, checks the certificate it gets back, pins its peers, runs its daemon
#   coordinator  waits for its certificate, then serves
#   auditor      opens a round of the companies and writes its result to /out/result.json
#
# /exchange holds only what the design hands from one party to another: certificate requests,
# certificates, the CA's certificate and the companies' fingerprints (which real companies give
# each other out of band). Each party's key, state and data stay in its own volume.
set -eu

EXCHANGE=/exchange
HOME_DIR=/var/lib/monoculture
WAIT_SECONDS=${WAIT_SECONDS:-600}

say() { echo "[$1] $2"; }

wait_for() {  # wait until FILE exists and is not empty
  tries=0
  while [ ! -s "$1" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt $((WAIT_SECONDS * 2)) ]; then
      echo "gave up after ${WAIT_SECONDS} s waiting for $1" >&2
      exit 1
    fi
    sleep 0.5
  done
}

publish() {  # copy FILE to the exchange as NAME, atomically (readers never see half a file)
  cp "$1" "$EXCHANGE/$2.tmp"
  mv "$EXCHANGE/$2.tmp" "$EXCHANGE/$2"
}

ca() {
  mkdir -p "$EXCHANGE/requests" "$EXCHANGE/certs" "$EXCHANGE/fingerprints"
  if [ ! -s /ca/ca.pem ]; then
    monoculture certs init --dir /ca
    monoculture certs issue --dir /ca --coordinator "${COORDINATOR_HOST:-coordinator}"
    monoculture certs issue --dir /ca --auditor
  fi
  publish /ca/ca.pem ca.pem
  # The coordinator and the round administration are the auditor's own: their keys go to them.
  mkdir -p /coordinator/certs /auditor/certs
  cp /ca/ca.pem /ca/coordinator.pem /ca/coordinator.key /coordinator/certs/
  cp /ca/ca.pem /ca/auditor.pem /ca/auditor.key /auditor/certs/
  for name in $COMPANIES; do
    wait_for "$EXCHANGE/requests/company-$name.csr"
    if [ ! -s "$EXCHANGE/certs/company-$name.pem" ]; then
      monoculture certs sign --dir /ca "$EXCHANGE/requests/company-$name.csr" --out /ca/company-$name.pem
      publish /ca/company-$name.pem certs/company-$name.pem
    fi
  done
  say ca "signed the requests of: $COMPANIES"
}

company() {
  certs="$HOME_DIR/certs"
  if [ ! -s "$certs/fingerprint" ]; then
    mkdir -p "$certs"
    monoculture certs request --company "$COMPANY" --dir "$certs" --force > "$certs/request.txt"
    cat "$certs/request.txt"
    sed -n 's/^fingerprint: *//p' "$certs/request.txt" > "$certs/fingerprint"
  fi
  own=$(cat "$certs/fingerprint")
  publish "$certs/company-$COMPANY.csr" "requests/company-$COMPANY.csr"
  # Real companies give each other their fingerprints out of band (docs/USAGE.md, "Pinning peers").
  echo "$own" > "$certs/fingerprint.out" && publish "$certs/fingerprint.out" "fingerprints/$COMPANY"
  wait_for "$EXCHANGE/certs/company-$COMPANY.pem"
  wait_for "$EXCHANGE/ca.pem"
  cp "$EXCHANGE/certs/company-$COMPANY.pem" "$EXCHANGE/ca.pem" "$certs/"
  signed=$(monoculture certs fingerprint "$certs/company-$COMPANY.pem")
  if [ "$signed" != "$own" ]; then
    echo "the certificate the CA returned is not for this company's key ($signed, not $own)" >&2
    exit 1
  fi
  { cat /etc/monoculture/client.toml; echo; echo "[peers]"; } > "$HOME_DIR/client.toml.tmp"
  for peer in $PEERS; do
    wait_for "$EXCHANGE/fingerprints/$peer"
    echo "$peer = \"$(cat "$EXCHANGE/fingerprints/$peer")\"" >> "$HOME_DIR/client.toml.tmp"
  done
  mv "$HOME_DIR/client.toml.tmp" "$HOME_DIR/client.toml"
  exec monoculture client run --config "$HOME_DIR/client.toml"
}

coordinator() {
  wait_for "$HOME_DIR/certs/coordinator.key"
  exec monoculture coordinator serve --config /etc/monoculture/coordinator.toml
}

auditor() {
  wait_for "$HOME_DIR/certs/auditor.key"
  roster=$(echo $COMPANIES | tr ' ' ',')
  tries=0
  # The coordinator may still be starting: try again for a minute.
  until round_id=$(monoculture round open --coordinator "$COORDINATOR" --certs "$HOME_DIR/certs" \
                     --companies "$roster"); do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || { echo "could not open a round at $COORDINATOR" >&2; exit 1; }
    sleep 2
  done
  say auditor "opened round $round_id of $roster"
  monoculture round result --coordinator "$COORDINATOR" --certs "$HOME_DIR/certs" "$round_id" \
    --wait "$WAIT_SECONDS" --out "/out/result.json.tmp"
  mv /out/result.json.tmp /out/result.json
  say auditor "result of round $round_id written to result.json"
}

case "${1:-}" in
  ca | company | coordinator | auditor) "$1" ;;
  *) echo "usage: steps.sh ca|company|coordinator|auditor" >&2; exit 2 ;;
esac
