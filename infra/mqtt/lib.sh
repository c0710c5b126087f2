# Shared by infra/mqtt/start and infra/mqtt/stop. Sourced, not run.
# shellcheck shell=bash

here="${here:?lib.sh expects \$here}"
data_root="$here/.data"
cache_dir="$here/.cache"

log() { echo "[mqtt] $*" >&2; }
die() { echo "[mqtt] error: $*" >&2; exit 1; }
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

# The users of a --secure broker: the ingest bridge's and the devices'.
mqtt_users=(bridge device)
# Debian's package and the libraries it needs beyond a base system.
mosquitto_packages=(mosquitto libmosquitto1 libcjson1 libdlt2 libwrap0)

# A pid is our broker only while it runs mosquitto: guards against pid reuse.
broker_running() {
  local pid
  pid="$(cat "$1/pid" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q mosquitto
}

# SIGTERM, then SIGKILL after 10 s.
stop_broker() {
  local dir="$1" pid waited=0
  pid="$(cat "$dir/pid" 2>/dev/null || true)"
  if broker_running "$dir"; then
    kill -TERM "$pid" 2>/dev/null || true
    while broker_running "$dir" && (( waited < 100 )); do
      sleep 0.1
      waited=$((waited + 1))
    done
    broker_running "$dir" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

# Sets mosquitto_bin and mosquitto_libs: the machine's Mosquitto, or Debian's package unpacked into the cache.
find_mosquitto() {
  mosquitto_libs=""
  mosquitto_bin="$(command -v mosquitto 2>/dev/null || true)"
  [ -z "$mosquitto_bin" ] && [ -x /usr/sbin/mosquitto ] && mosquitto_bin=/usr/sbin/mosquitto
  [ -n "$mosquitto_bin" ] && return 0
  local root="$cache_dir/root"
  if [ ! -x "$root/usr/sbin/mosquitto" ]; then
    command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 \
      || die "Mosquitto is not installed and this is not a Debian-like system to fetch it from; install the mosquitto package of your system (macOS: brew install mosquitto) and try again"
    mkdir -p "$cache_dir"
    exec 8>"$cache_dir/.lock"
    flock 8
    if [ ! -x "$root/usr/sbin/mosquitto" ]; then
      log "fetching Debian's ${mosquitto_packages[*]} into $cache_dir (once)"
      local debs="$cache_dir/debs"
      rm -rf "$debs" "$root"
      mkdir -p "$debs"
      if ! (cd "$debs" && apt-get download "${mosquitto_packages[@]}" >&2 2>/dev/null); then
        # A fresh machine may have no package lists yet: refresh them once, where we may.
        [ "$(id -u)" = 0 ] && apt-get update -qq >&2 || true
        (cd "$debs" && apt-get download "${mosquitto_packages[@]}" >&2) \
          || die "apt-get could not download ${mosquitto_packages[*]}: install Mosquitto (apt-get install mosquitto) or check that Debian's package mirror is reachable"
      fi
      local deb
      for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
      rm -rf "$debs"
    fi
    flock -u 8
  fi
  mosquitto_bin="$root/usr/sbin/mosquitto"
  mosquitto_libs="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib"
  local missing
  missing="$(LD_LIBRARY_PATH="$mosquitto_libs" ldd "$mosquitto_bin" 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | tr '\n' ' ')"
  [ -z "$missing" ] || die "the unpacked Mosquitto in $root needs libraries this machine lacks: $missing(install them, or apt-get install mosquitto)"
}

# mosquitto_passwd from the same place as the broker.
mosquitto_passwd_cmd() {
  local dir
  dir="$(dirname "$mosquitto_bin")"
  local bin
  for bin in "$dir/mosquitto_passwd" "$dir/../bin/mosquitto_passwd" "$(command -v mosquitto_passwd 2>/dev/null || true)"; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      LD_LIBRARY_PATH="$mosquitto_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin" "$@"
      return
    fi
  done
  die "mosquitto_passwd was not found next to $mosquitto_bin"
}
