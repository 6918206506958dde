#!/usr/bin/env bash
# Install Lingling from this checkout: a copy of the source, a virtualenv with the package, the
# config (only if there is none yet) and the service, then print what to do next.
#
#   sudo deploy/install.sh          Linux: system service (user `lingling` in group `audio`),
#                                   /opt/lingling, /etc/lingling, /var/lib/lingling
#   deploy/install.sh --user        Linux: systemd user service; macOS: LaunchAgent (macOS always
#                                   installs for the user: the microphone permission is per user)
#                                   ~/.local/share/lingling, ~/.config/lingling
# Options:
#   --prefix DIR   where the source copy, the virtualenv (and, with --user, the models) go
#   --dry-run      print every step and the files it would write; change nothing
#   PYTHON=python3.11 picks the interpreter (Lingling needs Python 3.11).
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

user_mode=0
dry_run=0
prefix=""
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
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

src=$(cd "$(dirname "$0")/.." && pwd)
os=${LINGLING_INSTALL_OS:-$(uname -s)}
python=${PYTHON:-python3.11}
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

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  msg="install.sh: Lingling needs Python 3.11 ($python not found or another version);"
  msg="$msg Debian/Ubuntu: apt-get install python3.11 python3.11-venv; macOS: brew install python@3.11"
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

# --- the source and the virtualenv ---------------------------------------------------------------

if [ "$src" != "$prefix/src" ]; then
  run mkdir -p "$prefix/src"
  if [ "$dry_run" = 1 ]; then
    note "+ copy assistant/ intents/ config.yaml pyproject.toml README.md models/manifest.yaml models/README.md deploy/ from $src to $prefix/src"
  else
    tar -C "$src" --exclude=__pycache__ -cf - assistant intents config.yaml pyproject.toml \
      README.md models/manifest.yaml models/README.md deploy | tar -C "$prefix/src" -xf -
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  run "$python" -m venv "$venv"
fi
# Editable: the package finds config.yaml, intents/ and models/manifest.yaml beside its source.
run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$prefix/src"

# --- config, secrets, models folder --------------------------------------------------------------

run mkdir -p "$config_dir"
if [ -e "$config_dir/config.yaml" ]; then
  note "keeping $config_dir/config.yaml"
else
  # The bundled config, with the folders it names made absolute for this installation.
  sed -e "s#^models_dir: models#models_dir: $models_dir#" \
    -e "s#^  directory: intents #  directory: $prefix/src/intents #" \
    "$src/config.yaml" | write "$config_dir/config.yaml" "$config_mode"
fi
if [ ! -e "$config_dir/env" ] && [ "$os" != Darwin ]; then
  printf '%s\n' "# Secrets for the service, one NAME=value per line; only root/you can read this." \
    "# LINGLING_MQTT_PASSWORD=" | write "$config_dir/env" 0600
fi
if [ "$user_mode" = 0 ]; then
  run chgrp lingling "$config_dir/config.yaml"
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
cat <<EOF

$done_line
Next steps:
  1. Get the models (about 1.4 GB):  $lingling models fetch -c $config all
  2. Start whisper-server and llama-server: see $prefix/src/models/README.md
  3. Set the MQTT broker in $config$secrets
  4. Check everything:  $lingling doctor -c $config
  5. Start it:          $sudo$start
     Follow its log:    $logs_cmd
EOF
