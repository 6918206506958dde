#!/bin/sh
# Start a private PulseAudio with two null sinks: no sound card, systemd or D-Bus needed.
#   "speaker": the default sink; what is played there is discarded.
#   "micfeed": play WAVs into it (paplay -d micfeed in.wav); its monitor is the default source,
#              so it is a real-time virtual microphone.
# Usage: scripts/virtual-audio.sh [DIR]   (default /tmp/lingling-audio)
# Clients (sounddevice through ALSA's "pulse"/"default" device, paplay, pactl) need:
#   export PULSE_SERVER=unix:DIR/native
# Stop: kill "$(cat DIR/pulse.pid)"   (the keeper streams below exit with the server)
set -eu
D=${1:-/tmp/lingling-audio}
if ! command -v pulseaudio >/dev/null 2>&1; then
  echo "pulseaudio not found: apt-get install -y --no-install-recommends" \
    "pulseaudio pulseaudio-utils libasound2-plugins" >&2
  exit 1
fi
mkdir -p "$D/runtime"
chmod 700 "$D/runtime"
D=$(cd "$D" && pwd)
SERVER="unix:$D/native"
HOME="$D" XDG_RUNTIME_DIR="$D/runtime" pulseaudio -n --daemonize=no --exit-idle-time=-1 \
  --disallow-exit --use-pid-file=no --log-target=stderr \
  -L "module-native-protocol-unix socket=$D/native auth-anonymous=1" \
  -L "module-null-sink sink_name=speaker rate=22050 channels=1" \
  -L "module-null-sink sink_name=micfeed rate=16000 channels=1" \
  >"$D/pulse.log" 2>&1 &
echo $! >"$D/pulse.pid"
ready=no
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  if PULSE_SERVER=$SERVER pactl info >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.25
done
if [ "$ready" != yes ]; then
  echo "pulseaudio did not start; see $D/pulse.log" >&2
  kill "$(cat "$D/pulse.pid")" 2>/dev/null || true
  exit 1
fi
PULSE_SERVER=$SERVER pactl set-default-sink speaker
PULSE_SERVER=$SERVER pactl set-default-source micfeed.monitor
# An idle null sink renders in 2 s blocks, so a new stream could wait up to 2 s for its first
# callback. A recording of each monitor asking for 100 ms keeps both sinks ticking like a sound card.
# Suspending and resuming restarts a sink's clock, so the 100 ms apply at once, not after 2 s.
for sink in speaker:22050 micfeed:16000; do
  PULSE_SERVER=$SERVER parec -d "${sink%:*}.monitor" --rate="${sink#*:}" --channels=1 \
    --latency-msec=100 >/dev/null 2>>"$D/pulse.log" &
done
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  [ "$(PULSE_SERVER=$SERVER pactl list short source-outputs | wc -l)" -ge 2 ] && break
  sleep 0.1
done
for sink in speaker micfeed; do
  PULSE_SERVER=$SERVER pactl suspend-sink "$sink" 1
  PULSE_SERVER=$SERVER pactl suspend-sink "$sink" 0
done
echo "pulseaudio pid $(cat "$D/pulse.pid"), PULSE_SERVER=$SERVER"
