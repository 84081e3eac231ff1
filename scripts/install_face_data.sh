#!/usr/bin/env bash
# Installs the face model's weights and the face photos (simviz_widgets.models.face_resnet,
# simviz_widgets.datasets.faces) into one data folder: $SIMVIZ_DATA if set, else
# ~/.cache/simviz_widgets. Network at set-up time only; nothing downloads at run time.
#   face-api-1.7.15/         npm @vladmandic/face-api@1.7.15 (MIT): face_recognition_model.bin and its
#                            manifest (face-api.js's port of dlib's public-domain ResNet face descriptor),
#                            demo photos sample1..6.jpg, LICENSE, and dist/face-api.esm.js (face-api with
#                            TensorFlow.js bundled: tests/test_face_model.py checks the port against it)
#   face-recognition-1.3.0/  PyPI sdist face-recognition==1.3.0 (MIT): tests/test_images/*.jpg, LICENSE
# Idempotent: a stamp file per folder, written last, means "complete"; re-runs do nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${SIMVIZ_DATA:-$HOME/.cache/simviz_widgets}"
FACE_API="$DATA/face-api-1.7.15"
FACE_REC="$DATA/face-recognition-1.3.0"
STAMP=.complete
VERSION=2  # bump when the set of installed files changes: older installs are redone

installed() { [ "$(cat "$1/$STAMP" 2>/dev/null)" = "$VERSION" ]; }

if installed "$FACE_API" && installed "$FACE_REC"; then
    exit 0
fi
mkdir -p "$DATA"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! installed "$FACE_API"; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install_face_data.sh: npm is needed to fetch @vladmandic/face-api (bash scripts/install_node.sh installs Node; Debian's npm package adds npm)" >&2
        exit 1
    fi
    (cd "$work" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null)
    tar -xzf "$work"/vladmandic-face-api-1.7.15.tgz -C "$work" \
        package/model/face_recognition_model.bin \
        package/model/face_recognition_model-weights_manifest.json \
        package/LICENSE package/dist/face-api.esm.js \
        package/demo/sample1.jpg package/demo/sample2.jpg package/demo/sample3.jpg \
        package/demo/sample4.jpg package/demo/sample5.jpg package/demo/sample6.jpg
    rm -rf "$FACE_API"
    mkdir -p "$FACE_API"
    cp "$work"/package/model/face_recognition_model* "$work"/package/demo/sample*.jpg "$work"/package/LICENSE \
        "$work"/package/dist/face-api.esm.js "$FACE_API"/
    echo "$VERSION" >"$FACE_API/$STAMP"
fi

if ! installed "$FACE_REC"; then
    pip=(.venv/bin/python -m pip)
    if [ ! -x .venv/bin/python ]; then
        pip=(python3 -m pip)
    fi
    if ! "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
            --no-build-isolation -d "$work/sdist" face-recognition==1.3.0 >"$work/pip.log" 2>&1; then
        echo "install_face_data.sh: pip could not download the sdist face-recognition==1.3.0:" >&2
        tail -n 5 "$work/pip.log" >&2
        exit 1
    fi
    sdist="$(ls "$work"/sdist/face*recognition-1.3.0.tar.gz | head -n1)"
    tar -xzf "$sdist" -C "$work"
    src="$(find "$work" -maxdepth 1 -type d -name 'face*recognition-1.3.0' | head -n1)"
    rm -rf "$FACE_REC"
    mkdir -p "$FACE_REC"
    cp "$src"/tests/test_images/*.jpg "$FACE_REC"/
    cp "$src"/LICENSE "$FACE_REC"/LICENSE
    echo "$VERSION" >"$FACE_REC/$STAMP"
fi
