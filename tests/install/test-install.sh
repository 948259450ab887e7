#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/install/test-install.sh BUILD PREFIX BINDIR LIBDIR INCLUDEDIR DATADIR PLUGINDIR
#
# Installs the build (meson install --destdir into a temporary directory) and
# uses only the installed tree: the plugin loads in gst-inspect-1.0 and runs
# in gst-launch-1.0, gst-rnn-info reads an installed model, gst-rnn-convert
# runs from the installed Python package, and tests/examples/embed.c,
# compiled with pkg-config against the installed headers and library,
# streams an installed model, its output compared bit for bit with the
# installed rnnfilter's on the same samples; and docs/embedding.md shows the
# example as it is.  The directories are the absolute install paths meson
# was configured with (tests/meson.build passes them).  Prints TAP; exits 77
# (skipped) when a tool it needs is missing.
set -u

[ $# -eq 7 ] || { echo "usage: $0 BUILD PREFIX BINDIR LIBDIR INCLUDEDIR DATADIR PLUGINDIR" >&2; exit 2; }
build=$1 prefix=$2 bindir=$3 libdir=$4 includedir=$5 datadir=$6 plugindir=$7
here=$(cd "$(dirname "$0")" && pwd)
api=gst-rnn-core-0.1

for tool in meson gst-inspect-1.0 gst-launch-1.0 pkg-config cc nm cmp; do
  command -v $tool > /dev/null || { echo "1..0 # SKIP $tool is not installed"; exit 77; }
done
py=/usr/bin/python3
[ -x $py ] || py=$(command -v python3) || { echo "1..0 # SKIP python3 is not installed"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/test-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
cd "$work"

# Nothing from the build or source tree: only what the installed tree gives.
unset GST_PLUGIN_PATH GST_PLUGIN_PATH_1_0 PYTHONPATH LD_LIBRARY_PATH PKG_CONFIG_PATH
export GST_REGISTRY=$work/registry.bin OPENBLAS_NUM_THREADS=1

n=0 failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$work/out"; }
# check NAME COMMAND...: one TAP line; the command's output shown on failure
check () {
  local name=$1; shift
  if "$@" > "$work/out" 2>&1; then ok "$name"; else not_ok "$name"; return 1; fi
}

echo "1..14"

check "meson install --destdir" meson install -C "$build" --destdir "$root" --quiet

expected="$plugindir/libgstrnn.so $bindir/gst-rnn-info $bindir/gst-rnn-convert
  $libdir/lib$api.so $libdir/lib$api.so.0 $libdir/pkgconfig/$api.pc
  $includedir/gst-rnn-0.1/gst-rnn/rnn.h $includedir/gst-rnn-0.1/gst-rnn/rnn-version.h
  $datadir/gst-rnn/models/softclip-lstm8.safetensors"
missing=""
for f in $expected; do [ -e "$root$f" ] || missing="$missing $f"; done
site=$(dirname "$(find "$root" -path '*/gstrnn/__init__.py' | head -1)")
[ -n "$site" ] && [ "$site" != . ] || missing="$missing gstrnn/__init__.py"
site=$(dirname "$site")
echo "missing:$missing" > out
if [ -z "$missing" ]; then ok "installed tree complete"; else not_ok "installed tree complete"; fi
(cd "$root" && find . -type f -o -type l | sort | sed 's/^\./# /')

# The plugin from the installed tree alone.
check "gst-inspect-1.0 rnn finds the installed plugin" \
  env GST_PLUGIN_SYSTEM_PATH="$root$plugindir" sh -c \
  'gst-inspect-1.0 rnn && gst-inspect-1.0 rnn | grep -q "Filename *'"$root$plugindir"'/libgstrnn.so"'

check "gst-rnn-info reads an installed model" sh -c \
  '"$0" "$1" && "$0" "$1" | grep -q "LSTM, 1 layer of 8"' \
  "$root$bindir/gst-rnn-info" "$root$datadir/gst-rnn/models/softclip-lstm8.safetensors"

# gst-rnn-convert as a user runs it (its own #! line, no PYTHONPATH) finds
# the package installed with it, and imports that copy rather than another
# one on sys.path; the package lies where the interpreter looks under the
# prefix, when it looks there at all.
check "gst-rnn-convert --help from the installed package" \
  sh -c '"$1" --help && PYTHONPATH="$2" "$0" -c "import gstrnn; print(gstrnn.__file__)" | grep -q "^$2/gstrnn/"' \
  "$py" "$root$bindir/gst-rnn-convert" "$site"
mkdir -p decoy/gstrnn
echo 'raise SystemExit("a gstrnn other than the installed one was imported")' > decoy/gstrnn/__init__.py
check "gst-rnn-convert imports the package installed with it, not another" \
  env PYTHONPATH="$work/decoy" "$py" -c '
import os, runpy, sys
tool, want = sys.argv[1:3]
sys.argv = [tool, "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    assert e.code in (0, None), e.code
print(sys.modules["gstrnn"].__file__)
assert os.path.realpath(sys.modules["gstrnn"].__file__) == want, want
' "$root$bindir/gst-rnn-convert" "$(realpath "$site")/gstrnn/__init__.py"
# its check plays the file through the rnnfilter installed with it, with no
# GST_PLUGIN_PATH (a prefix GStreamer does not search)
"$py" -c '
import json, random
random.seed(3)
H = 4
def r(*shape):
    return [r(*shape[1:]) for _ in range(shape[0])] if len(shape) > 1 else [random.uniform(-0.5, 0.5) for _ in range(shape[0])]
sd = {"rec.weight_ih_l0": r(4 * H, 1), "rec.weight_hh_l0": r(4 * H, H), "rec.bias_ih_l0": r(4 * H),
      "rec.bias_hh_l0": r(4 * H), "lin.weight": r(1, H), "lin.bias": r(1)}
json.dump({"model_data": {"model": "SimpleRNN", "input_size": 1, "skip": 1, "output_size": 1,
                          "unit_type": "LSTM", "num_layers": 1, "hidden_size": H, "bias_fl": True},
           "state_dict": sd}, open("amp.json", "w"))
'
check "gst-rnn-convert checks through the installed rnnfilter" sh -c \
  '"$0" amp.json amp.safetensors && "$0" amp.json amp.safetensors | grep -q "check: max |difference|"' \
  "$root$bindir/gst-rnn-convert"
check "the package lies on $py's path for $prefix" "$py" -c '
import os, sys
prefix, site = sys.argv[1:3]
under = [p for p in sys.path if p.startswith(prefix.rstrip("/") + "/lib")
         and os.path.basename(p) in ("site-packages", "dist-packages")]
print("searched under the prefix:", under, "installed:", site)
assert not under or site in under
' "$prefix" "${site#"$root"}"

# Every function the installed headers declare is exported, and nothing
# outside the rnn_ namespace is.
lib=$root$libdir/lib$api.so.0
grep -ohE '\brnn_[a-z0-9_]+ \(' "$root$includedir"/gst-rnn-0.1/gst-rnn/*.h | sed 's/ (//' | sort -u > declared
nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u > exported
{ echo "declared, not exported:"; comm -23 declared exported
  echo "exported outside rnn_:"; grep -v '^rnn_' exported; } > out
if [ -z "$(comm -23 declared exported)" ] && ! grep -qv '^rnn_' exported; then
  ok "the library exports the $(wc -l < declared) functions of its headers"
else
  not_ok "the library exports the functions of its headers"
fi
comm -13 declared exported | sed 's/^/# exported, declared in no installed header: /'

# The example against the installed headers and library, through pkg-config.
# pkg-config's --define-prefix cannot place a multiarch libdir and a sysroot
# would move GLib's paths too, so the .pc is relocated as a packager would:
# its prefix line rewritten to the staged prefix.
mkdir pc
sed "s|^prefix=.*|prefix=$root$prefix|" "$root$libdir/pkgconfig/$api.pc" > pc/$api.pc
flags=$(PKG_CONFIG_PATH=$work/pc pkg-config --cflags --libs $api)
echo "# pkg-config --cflags --libs $api: $flags"
check "embed.c compiles against the installed tree" \
  cc -std=c11 -Wall -Werror -o embed "$here/../examples/embed.c" $flags
if command -v c++ > /dev/null; then
  check "embed.c compiles as C++ against the installed headers" \
    c++ -x c++ -Wall -Werror -fsyntax-only "$here/../examples/embed.c" $flags
else
  ok "# SKIP c++ is not installed"
fi

# 10000 samples of a sawtooth, through embed and through rnnfilter.
model=$root$datadir/gst-rnn/models/softclip-lstm8.safetensors
gst-launch-1.0 -q audiotestsrc wave=saw freq=110 volume=0.8 samplesperbuffer=1000 num-buffers=10 ! \
  audio/x-raw,format=F32LE,rate=48000,channels=1 ! filesink location=in.f32 > out 2>&1 || cat out
export LD_LIBRARY_PATH=$root$libdir
check "embed streams an installed model from the installed library" sh -c \
  './embed "$0" in.f32 embed.f32 && ldd ./embed | grep -q "'"$root$libdir/lib$api.so.0"'" && ! cmp -s in.f32 embed.f32' \
  "$model" && sed 's/^/# /' out
unset LD_LIBRARY_PATH
check "embed's output = the installed rnnfilter's, bit for bit" sh -c \
  'GST_PLUGIN_SYSTEM_PATH="$0:$(pkg-config --variable=pluginsdir gstreamer-1.0)" gst-launch-1.0 -q \
     filesrc location=in.f32 ! rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le \
       sample-rate=48000 num-channels=1 ! rnnfilter model-location="$1" ! filesink location=gst.f32 &&
   ls -l in.f32 embed.f32 gst.f32 && cmp embed.f32 gst.f32' \
  "$root$plugindir" "$model"

# docs/embedding.md shows the example as it is.
awk '/^```c$/ { on = 1; next } /^```$/ { on = 0 } on' "$here/../../docs/embedding.md" > shown
check "docs/embedding.md shows tests/examples/embed.c as it is" \
  diff -u "$here/../examples/embed.c" shown

[ $failed -eq 0 ]
