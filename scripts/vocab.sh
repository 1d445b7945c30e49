#!/usr/bin/env bash
# make vocab: llama.cpp's sources as the registry's llama-cpp-python sdist carries them, unpacked under
#   $CACHE/llama.cpp-$LLAMA_CPP/vendor/llama.cpp
# The main test suite needs its real tokenizer vocabularies (models/ggml-vocab-*.gguf with their .inp/.out test
# vectors: reasoning_sft/demo/families.py rebuilds each family's published tokenizer from them) and its converter
# (convert_hf_to_gguf.py, gguf-py); `make serve-env` (scripts/serve_env.sh) builds llama-server in the same tree.
# $CACHE is ${XDG_CACHE_HOME:-~/.cache}/reasoning-sft: outside the clone, so fresh clones on one machine share it.
#
# Idempotent: skipped when the stamp file says the tree is complete. Nothing is downloaded but the sdist, from
# the package registry (pip download). The unpack goes to a temporary sibling, renamed into place when whole.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LLAMA_CPP=${LLAMA_CPP:-0.3.36}   # keep equal to LLAMA_CPP_VERSION in reasoning_sft/serve/export.py
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/reasoning-sft
SRC=$CACHE/llama.cpp-$LLAMA_CPP

if [ -f "$SRC/.unpacked" ]; then
    echo "vocab: llama.cpp $LLAMA_CPP sources are ready in $SRC"
    exit 0
fi
echo "vocab: llama.cpp sources from llama-cpp-python==$LLAMA_CPP's sdist -> $SRC"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# pip as usual, less the lines some machines' pip configuration prints for every package it looks up
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP" -d "$tmp" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
mkdir -p "$CACHE"
rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$SRC.tmp" --strip-components 1
rm -rf "$SRC" && mv "$SRC.tmp" "$SRC"
touch "$SRC/.unpacked"
ls "$SRC"/vendor/llama.cpp/models/ggml-vocab-*.gguf | wc -l | sed 's/^/vocab: vocabularies: /'
