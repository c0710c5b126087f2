# Shared by the scripts under infra/ (Kafka, MQTT). Sourced, not run; the caller defines log and die.
# shellcheck shell=bash

require_openssl() {
  command -v openssl >/dev/null 2>&1 \
    || die "--secure needs 'openssl' on PATH to make a local CA and certificates (Debian/Ubuntu: apt-get install openssl)"
}

# Issues a certificate for CN $2 signed by the CA in $1, as $1/$3.key (PKCS#8) and $1/$3.crt, with extensions $4.
issue_cert() {
  local dir="$1" cn="$2" name="$3" ext="$4"
  openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$cn" 2>/dev/null || return 1
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 3650 \
    -out "$dir/$name.crt" -extfile <(printf '%b\n' "$ext") 2>/dev/null || return 1
  rm -f "$dir/$name.csr"
  chmod 600 "$dir/$name.key"
}

# Makes, once, a local CA in $1 (ca.pem, ca.key) named $2.
ensure_ca() {
  local dir="$1" name="$2"
  [ -s "$dir/ca.pem" ] && return 0
  require_openssl
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
    -subj "/CN=$name" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || die "openssl could not make the CA in $dir"
  chmod 600 "$dir/ca.key"
}

# A random password in $1, once (URL- and shell-safe characters).
ensure_password() {
  [ -s "$1" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$1")
}

port_free() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [ -z "$(ss -Hltn "( sport = :$port )" 2>/dev/null)" ]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  local who
  who="$(ss -Hltnp "( sport = :$1 )" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 | sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1, pid \2/')"
  [ -n "$who" ] && echo " (by $who)"
  return 0
}
