#!/usr/bin/env bash
# Regenerates services/common/gen from proto/ with ts-proto (npm) and protoc (Debian's
# protobuf-compiler). The output is committed; test/gen.test.ts fails when it is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-services/common/gen}
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,forceLong=number,oneof=unions-value,importSuffix=.js,useExactTypes=false,outputTypeRegistry=false,useOptionals=none \
  -I proto proto/raftkv/v1/*.proto
# protoc's version differs between machines; keep it out of the header so output is stable.
sed -i -E '/^\/\/ +protoc +v/d; /^\/\/ +protoc-gen-ts_proto +v/d' "$out"/raftkv/v1/*.ts
