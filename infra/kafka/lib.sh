# Shared by infra/kafka/start and infra/kafka/stop. Sourced, not run.
# shellcheck shell=bash

here="${here:?lib.sh expects \$here}"
repo_root="$(cd "$here/../.." && pwd)"
data_root="$here/.data"
cache_dir="$here/.cache"
libs_dir="$cache_dir/libs"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"

log() { echo "[kafka] $*" >&2; }
die() { echo "[kafka] error: $*" >&2; exit 1; }
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

docker_hint() {
  echo "Alternatives: with Docker, 'docker compose -f infra/docker-compose.yml up -d' and then KAFKA_BROKERS=127.0.0.1:19092; or point KAFKA_BROKERS at a broker you already run."
}

require_java() {
  command -v java >/dev/null 2>&1 \
    || die "Java 17 or newer is needed to run the local Kafka broker, and 'java' is not on PATH. Install a JDK or JRE 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17). $(docker_hint)"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1)"
  [[ "$major" =~ ^[0-9]+$ ]] && (( major >= 17 )) \
    || die "Kafka $kafka_version needs Java 17 or newer; 'java' on PATH is version ${major:-unknown}. $(docker_hint)"
}

require_node_modules() {
  [ -d "$repo_root/node_modules/kafkajs" ] \
    || die "the readiness probe needs the project's npm packages; run 'npm ci' in $repo_root first"
}

# Fetches the broker jars from Maven Central once; later starts reuse the cache.
ensure_jars() {
  local stamp="$libs_dir/.complete-$(cksum <"$here/pom.xml" | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  command -v mvn >/dev/null 2>&1 \
    || die "Maven is needed once, to fetch the Kafka $kafka_version jars from Maven Central, and 'mvn' is not on PATH. Install Maven 3.6+ (Debian/Ubuntu: apt-get install maven; macOS: brew install maven). $(docker_hint)"
  mkdir -p "$cache_dir"
  exec 8>"$cache_dir/.lock"
  flock 8
  if [ ! -f "$stamp" ]; then
    log "fetching the Kafka $kafka_version broker jars from Maven Central into $libs_dir (once)"
    rm -rf "$libs_dir"
    mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs_dir" -DincludeScope=runtime >&2 \
      || die "Maven could not fetch the Kafka jars (output above). Check that Maven Central is reachable. $(docker_hint)"
    touch "$stamp"
  fi
  flock -u 8
}

# A pid is one of our brokers only while it runs kafka.Kafka: guards against pid reuse.
pid_alive() {
  local pid="$1"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'
}

instance_pids() {
  local dir="$1" f pid
  for f in "$dir"/node*/pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    pid_alive "$pid" && echo "$pid"
  done
  return 0
}

instance_running() { [ -n "$(instance_pids "$1")" ]; }

instance_value() { sed -n "s/^$2=//p" "$1/instance.env" 2>/dev/null; }
instance_bootstrap() { instance_value "$1" BOOTSTRAP; }
instance_nodes() { instance_value "$1" NODES; }
instance_secure() { local v; v="$(instance_value "$1" SECURE)"; echo "${v:-false}"; }

bootstrap_for() {
  local nodes="$1" port="$2" host="${3:-127.0.0.1}" out="" i
  for ((i = 0; i < nodes; i++)); do out+="${out:+,}$host:$((port + i))"; done
  echo "$out"
}

# True once the brokers answer a metadata request and all `expected` of them are registered.
# A secure instance (data dir $3) is probed over TLS as its admin user.
probe() {
  if [ -n "${3:-}" ] && [ "$(instance_secure "$3")" = true ]; then
    PROBE_CA_FILE="$3/secrets/ca.pem" PROBE_USER=admin PROBE_PASSWORD_FILE="$3/secrets/admin.password" \
      node "$here/probe.mjs" "$1" "$2" >/dev/null 2>&1
  else
    node "$here/probe.mjs" "$1" "$2" >/dev/null 2>&1
  fi
}

# --- secure instances: a local CA, certificates, SCRAM users -----------------------------------------------

# The SCRAM users of a secure instance: the brokers' own, a super user for administration, and one per role.
secure_users=(broker admin worker server reader producer ingest)

# Creates, once, in $1: a CA, a broker certificate for 127.0.0.1, localhost and $2 (for server and client use: the
# brokers authenticate to the controllers with it), a client certificate, and a random password per user.
ensure_secrets() {
  local dir="$1" host="$2" user
  require_openssl
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ ! -s "$dir/ca.pem" ]; then
    log "making a local CA and certificates in $dir (once)"
    ensure_ca "$dir" "streamgrad local test CA"
    rm -f "$dir/broker.host"
    issue_cert "$dir" streamgrad-client client 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment' \
      || die "openssl could not issue the client certificate in $dir"
  fi
  if [ "$(cat "$dir/broker.host" 2>/dev/null)" != "$host" ]; then
    issue_cert "$dir" streamgrad-broker broker \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$host\\nextendedKeyUsage=serverAuth,clientAuth\\nkeyUsage=digitalSignature,keyEncipherment" \
      || die "openssl could not issue the broker certificate in $dir"
    cat "$dir/broker.key" "$dir/broker.crt" >"$dir/broker-keystore.pem"
    chmod 600 "$dir/broker-keystore.pem"
    echo "$host" >"$dir/broker.host"
  fi
  for user in "${secure_users[@]}"; do
    ensure_password "$dir/$user.password"
  done
}

password_of() { tr -d '\n' <"$1/$2.password"; }

# The listener settings of one node: plaintext, or SASL_SSL for clients and brokers plus mutual TLS to the controllers.
listener_properties() {
  local secure="$1" host="$2" port="$3" controller_port="$4" dir="$5" user plain_users=""
  if [ "$secure" != true ]; then
    printf '%s\n' \
      "listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$controller_port" \
      "advertised.listeners=PLAINTEXT://$host:$port" \
      "inter.broker.listener.name=PLAINTEXT" \
      "controller.listener.names=CONTROLLER" \
      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    return 0
  fi
  for user in "${secure_users[@]}"; do plain_users+=" user_$user=\"$(password_of "$dir" "$user")\""; done
  printf '%s\n' \
    "listeners=SECURE://$host:$port,CONTROLLER://127.0.0.1:$controller_port" \
    "advertised.listeners=SECURE://$host:$port" \
    "inter.broker.listener.name=SECURE" \
    "controller.listener.names=CONTROLLER" \
    "listener.security.protocol.map=SECURE:SASL_SSL,CONTROLLER:SSL" \
    "ssl.keystore.type=PEM" \
    "ssl.keystore.location=$dir/broker-keystore.pem" \
    "ssl.truststore.type=PEM" \
    "ssl.truststore.location=$dir/ca.pem" \
    "listener.name.controller.ssl.client.auth=required" \
    "listener.name.secure.ssl.client.auth=requested" \
    "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN" \
    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" \
    "listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\" password=\"$(password_of "$dir" broker)\";" \
    "listener.name.secure.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "listener.name.secure.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"broker\" password=\"$(password_of "$dir" broker)\"$plain_users;" \
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" \
    "super.users=User:broker;User:admin;User:CN=streamgrad-broker" \
    "allow.everyone.if.no.acl.found=false"
}

# The StorageTool arguments that create every user's SCRAM credentials (both mechanisms) at format time.
scram_format_args() {
  local secure="$1" dir="$2" user mechanism
  [ "$secure" = true ] || return 0
  for user in "${secure_users[@]}"; do
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      printf -- '--add-scram %s=[name=%s,password=%s] ' "$mechanism" "$user" "$(password_of "$dir" "$user")"
    done
  done
}

describe_secrets() {
  local dir="$1"
  log "secure: SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), ACLs enforced, super users broker and admin"
  log "  CA certificate:      $dir/ca.pem"
  log "  client certificate:  $dir/client.crt (key $dir/client.key), for mutual TLS"
  log "  users and passwords: ${secure_users[*]}, each in $dir/<user>.password"
}



print_log_tails() {
  local dir="$1" f
  for f in "$dir"/node*/broker.log; do
    [ -f "$f" ] || continue
    echo "----- last 40 lines of $f -----" >&2
    tail -n 40 "$f" >&2
  done
}

# SIGTERM lets each broker shut down cleanly and keep its log; SIGKILL after 30 s.
stop_instance() {
  local dir="$1" pids waited=0
  pids="$(instance_pids "$dir")"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    while [ -n "$(instance_pids "$dir")" ] && (( waited < 300 )); do
      sleep 0.1
      waited=$((waited + 1))
    done
    pids="$(instance_pids "$dir")"
    if [ -n "$pids" ]; then
      log "broker(s) $pids did not stop within 30s; killing them"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$dir"/node*/pid
}
