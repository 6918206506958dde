#!/usr/bin/env bash
# Install Lingling from this checkout: its wheel in a virtualenv (no copy of the source), the
# config and the intents (only if there are none yet), whisper-server and llama-server when this
# machine has them (Lingling starts them itself), and the service; then print what to do next.
#
#   sudo deploy/install.sh          Linux: system service (user `lingling` in group `audio`),
#                                   /opt/lingling, /etc/lingling, /var/lib/lingling
#   deploy/install.sh --user        Linux: systemd user service; macOS: LaunchAgent (macOS always
#                                   installs for the user: the microphone permission is per user)
#                                   ~/.local/share/lingling, ~/.config/lingling
# Options:
#   --prefix DIR   where the virtualenv, the servers, the docs (and, with --user, the models) go
#   --wheel FILE   install this wheel instead of building one from the checkout
#   --dry-run      print every step and the files it would write; change nothing
#   PYTHON=python3.13 picks the interpreter (Lingling runs on Python 3.11 to 3.13).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

user_mode=0
dry_run=0
prefix=""
wheel=""
while (($#)); do
  case "$1" in
    --user) user_mode=1 ;;
    --dry-run) dry_run=1 ;;
    --prefix)
      [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
      prefix=$2
      shift
      ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --wheel)
      [ $# -ge 2 ] || { echo "install.sh: --wheel needs a file" >&2; exit 2; }
      wheel=$2
      shift
      ;;
    --wheel=*) wheel=${1#--wheel=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

src=$(cd "$(dirname "$0")/.." && pwd)
os=${LINGLING_INSTALL_OS:-$(uname -s)}
python=${PYTHON:-python3}
if [ "$os" = Darwin ] && [ "$user_mode" = 0 ]; then
  echo "macOS: installing a LaunchAgent for $(id -un) (there is no system-wide mode)"
  user_mode=1
fi

if [ "$user_mode" = 1 ]; then
  prefix=${prefix:-$HOME/.local/share/lingling}
  config_dir=${XDG_CONFIG_HOME:-$HOME/.config}/lingling
  config_mode=0600
  models_dir=$prefix/models
else
  prefix=${prefix:-/opt/lingling}
  config_dir=/etc/lingling
  config_mode=0640 # root:lingling
  state_dir=/var/lib/lingling
  models_dir=$state_dir/models
  if [ "$dry_run" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: the system service needs root: sudo $0, or $0 --user" >&2
    exit 1
  fi
fi
case "$prefix" in
  /*) ;;
  *) prefix=$PWD/$prefix ;;
esac
venv=$prefix/.venv

# --- helpers: every change goes through one of these -------------------------------------------

run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# write FILE MODE: write stdin to FILE with MODE (shown, indented, in a dry run)
write() {
  local file=$1 mode=$2 tmp
  if [ "$dry_run" = 1 ]; then
    printf '+ write %s (mode %s):\n' "$file" "$mode"
    sed 's/^/    /'
    return
  fi
  tmp=$(mktemp)
  cat >"$tmp"
  install -m "$mode" "$tmp" "$file"
  rm -f "$tmp"
}

note() { printf '%s\n' "$*"; }

# --- checks --------------------------------------------------------------------------------------

if ! "$python" -c 'import sys, venv; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null; then
  msg="install.sh: Lingling needs Python 3.11 to 3.13 with venv ($python not found, or another"
  msg="$msg version; PYTHON=python3.X picks one); Debian/Ubuntu: apt-get install python3-venv;"
  msg="$msg macOS: brew install python@3.13"
  if [ "$dry_run" = 1 ]; then
    note "warning: ${msg#install.sh: }"
  else
    echo "$msg" >&2
    exit 1
  fi
fi

# --- the service user (Linux, system mode) -------------------------------------------------------

if [ "$user_mode" = 0 ]; then
  if id -u lingling >/dev/null 2>&1; then
    note "user lingling exists"
    if getent group audio >/dev/null && ! id -nG lingling | tr ' ' '\n' | grep -qx audio; then
      run usermod -a -G audio lingling
    fi
  else
    groups=()
    getent group audio >/dev/null && groups=(--groups audio)
    run useradd --system --user-group ${groups[@]+"${groups[@]}"} --home-dir "$state_dir" \
      --no-create-home --shell /usr/sbin/nologin --comment "Lingling voice assistant" lingling
  fi
fi

# --- the package: a wheel in a virtualenv ----------------------------------------------------------

# Installed, Lingling reads its bundled config.yaml, intents and model manifest from the package.
if [ -z "$wheel" ]; then
  if [ "$dry_run" = 1 ]; then
    wheel="$prefix/wheels/lingling-VERSION-py3-none-any.whl"
    note "+ build the wheel of $src into $prefix/wheels (pip wheel --no-deps)"
  else
    rm -rf "$prefix/wheels"
    mkdir -p "$prefix/wheels"
    "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$prefix/wheels" "$src"
    wheel=$(echo "$prefix"/wheels/lingling-*.whl)
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  run "$python" -m venv "$venv"
fi
constraints=()
[ -f "$src/constraints.txt" ] && constraints=(-c "$src/constraints.txt") # the tested versions
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
run "${pip[@]}" ${constraints[@]+"${constraints[@]}"} "$wheel"
run "${pip[@]}" --force-reinstall --no-deps "$wheel" # the same version number, newer files
run mkdir -p "$prefix/doc"
run install -m 0644 "$src/README.md" "$prefix/doc/README.md"
run install -m 0644 "$src/models/README.md" "$prefix/doc/models.md"

# --- the servers: Lingling starts them, from PATH (the unit's includes $prefix/bin) -------------

servers_missing=()
for server in whisper-server:LINGLING_WHISPER_SERVER llama-server:LINGLING_LLAMA_SERVER; do
  name=${server%%:*}
  variable=${server#*:}
  found=${!variable:-}
  [ -n "$found" ] || found=$("$src/scripts/build-servers" --cached 2>/dev/null |
    sed -n "s/^$variable=//p" || true)
  [ -n "$found" ] || found=$(command -v "$name" || true)
  case $found in
    "") servers_missing+=("$name") ;;
    /usr/bin/* | /usr/local/bin/* | /opt/homebrew/bin/*) note "$name: $found (on the service's PATH)" ;;
    *) run install -D -m 0755 "$found" "$prefix/bin/$name" ;;
  esac
done

# --- config, secrets, models folder --------------------------------------------------------------

run mkdir -p "$config_dir"
if [ -e "$config_dir/config.yaml" ]; then
  note "keeping $config_dir/config.yaml"
else
  # The bundled config, with the models folder made absolute for this installation. Its
  # intents.directory (intents) is the folder beside it, written next.
  sed -e "s#^models_dir: models#models_dir: $models_dir#" \
    "$src/config.yaml" | write "$config_dir/config.yaml" "$config_mode"
fi
if [ -e "$config_dir/intents" ]; then
  note "keeping $config_dir/intents"
else
  # The bundled intents, to edit: the devices and rooms in _common.yaml are the first thing to change.
  run mkdir -p "$config_dir/intents"
  run install -m "$config_mode" "$src"/intents/*.yaml "$config_dir/intents/"
fi
if [ ! -e "$config_dir/env" ] && [ "$os" != Darwin ]; then
  printf '%s\n' "# Secrets for the service, one NAME=value per line; only root/you can read this." \
    "# LINGLING_MQTT_PASSWORD=" | write "$config_dir/env" 0600
fi
if [ "$user_mode" = 0 ]; then
  run chgrp -R lingling "$config_dir/config.yaml" "$config_dir/intents"
  run chmod 0750 "$config_dir/intents"
  run install -d -o lingling -g lingling -m 0750 "$state_dir" "$models_dir"
else
  run mkdir -p "$models_dir"
fi

# --- the service ---------------------------------------------------------------------------------

if [ "$os" = Darwin ]; then
  agents=$HOME/Library/LaunchAgents
  logs=$HOME/Library/Logs/lingling
  run mkdir -p "$agents" "$logs"
  sed -e "s#@PREFIX@#$prefix#g" -e "s#@CONFIG_DIR@#$config_dir#g" -e "s#@LOG_DIR@#$logs#g" \
    "$src/deploy/com.lingling.assistant.plist" | write "$agents/com.lingling.assistant.plist" 0600
  start="launchctl bootstrap gui/$(id -u) $agents/com.lingling.assistant.plist"
  logs_cmd="tail -f $logs/lingling.log"
  as_service=""
elif [ "$user_mode" = 1 ]; then
  units=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
  run mkdir -p "$units"
  sed -e "s#%h/.local/share/lingling#$prefix#g" -e "s#%h/.config/lingling#$config_dir#g" \
    "$src/deploy/lingling-user.service" | write "$units/lingling.service" 0644
  if command -v systemctl >/dev/null; then
    run systemctl --user daemon-reload || note "warning: systemctl --user daemon-reload failed"
  fi
  start="systemctl --user enable --now lingling"
  logs_cmd="journalctl --user -u lingling -f"
  as_service=""
else
  sed -e "s#/opt/lingling#$prefix#g" "$src/deploy/lingling.service" |
    write /etc/systemd/system/lingling.service 0644
  if command -v systemctl >/dev/null; then
    run systemctl daemon-reload || note "warning: systemctl daemon-reload failed"
  fi
  start="systemctl enable --now lingling"
  logs_cmd="journalctl -u lingling -f"
  as_service="sudo -u lingling "
fi

lingling="$as_service$venv/bin/lingling"
config=$config_dir/config.yaml
if [ "$dry_run" = 1 ]; then
  done_line="Dry run: nothing was changed."
else
  done_line="Lingling is installed in $prefix."
fi
secrets=" (its password in $config_dir/env)"
[ "$os" = Darwin ] && secrets=" (its password in the plist's EnvironmentVariables)"
sudo=""
[ "$user_mode" = 0 ] && sudo="sudo "
if ((${#servers_missing[@]})); then
  missing=${servers_missing[*]}
  servers_step="Build ${missing/ / and }: $src/scripts/build-servers, then run this again
     (or put them in $prefix/bin, or name them in stt.server.binary / llm.server.binary)"
else
  servers_step="The servers: Lingling starts whisper-server and llama-server itself
     (stt.server and llm.server in $config; the models are in $prefix/doc/models.md)"
fi
cat <<EOF

$done_line
Next steps:
  1. Get the models (about 1.4 GB):  $lingling models fetch -c $config all
  2. $servers_step
  3. Set the MQTT broker in $config$secrets
  4. Check everything:  $lingling doctor -c $config
  5. Start it:          $sudo$start
     Follow its log:    $logs_cmd
EOF
