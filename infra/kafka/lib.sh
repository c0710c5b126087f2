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

bootstrap_for() {
  local nodes="$1" port="$2" host="${3:-127.0.0.1}" out="" i
  for ((i = 0; i < nodes; i++)); do out+="${out:+,}$host:$((port + i))"; done
  echo "$out"
}

# True once the brokers answer a metadata request and all `expected` of them are registered.
probe() {
  node "$here/probe.mjs" "$1" "$2" >/dev/null 2>&1
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
