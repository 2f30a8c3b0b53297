#!/usr/bin/env bash
# The GPU judge, built end to end: fine-tune -> TensorRT-LLM checkpoint -> engine -> Triton repository -> serve.
#
# Run inside NVIDIA's Triton TensorRT-LLM container (nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3,
# TensorRT-LLM >= 0.12) on a machine with an NVIDIA GPU, from a checkout of this repository. See README.md here.
#
#   infra/trtllm/build.sh [STAGE ...]      stages, in order: finetune convert engine repository serve check
#                                          (no stage: finetune convert engine repository)
#
# Settings (environment):
#   TRAIN_FILES      gold-format JSONL files to fine-tune on (space-separated; required by `finetune`)
#   EVAL_FILES       held-out gold-format JSONL files: accuracy, swap consistency, fitted temperatures
#   TEACHER          train on teacher[TEACHER] labels instead of human_label
#   BASE_MODEL       Qwen/Qwen2.5-1.5B-Instruct      (any Qwen2/Llama-class instruct model; HF id or directory)
#   MODEL_FAMILY     qwen                            (which TensorRT-LLM example converts it: qwen | llama)
#   TRTLLM_SRC       /opt/TensorRT-LLM               (a NVIDIA/TensorRT-LLM checkout at the container's version)
#   CONVERT_SCRIPT   found under $TRTLLM_SRC/examples for MODEL_FAMILY
#   WORK             <repo>/.trtllm                  (hf-judge/, ckpt/, engine/, model_repository/)
#   REPOSITORY       $WORK/model_repository          (the Triton model repository written by `repository`)
#   SERVE_ROOT       $REPOSITORY                     (where the server will see REPOSITORY, e.g. /models)
#   DTYPE            bfloat16    MAX_INPUT_LEN 2048   MAX_BATCH_SIZE 64   MAX_NUM_TOKENS 16384
#   KV_FRACTION      0.85        HTTP_PORT 8000       GRPC_PORT 8001      METRICS_PORT 8002
#   EPOCHS 2  BATCH_SIZE 8  GRAD_ACCUM 4  LR 1e-5  REFERENCE_DROP 0.3
#   CONVERT_ARGS     extra convert_checkpoint.py flags (e.g. --use_embedding_sharing for old Qwen converters)
#   BUILD_ARGS       extra trtllm-build flags
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/infra/trtllm"
WORK=${WORK:-$ROOT/.trtllm}
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
MODEL_FAMILY=${MODEL_FAMILY:-qwen}
TRAIN_FILES=${TRAIN_FILES:-}
EVAL_FILES=${EVAL_FILES:-}
TEACHER=${TEACHER:-}
TRTLLM_SRC=${TRTLLM_SRC:-/opt/TensorRT-LLM}
CONVERT_SCRIPT=${CONVERT_SCRIPT:-}
REPOSITORY=${REPOSITORY:-$WORK/model_repository}
SERVE_ROOT=${SERVE_ROOT:-$REPOSITORY}
DTYPE=${DTYPE:-bfloat16}
MAX_INPUT_LEN=${MAX_INPUT_LEN:-2048}
MAX_BATCH_SIZE=${MAX_BATCH_SIZE:-64}
MAX_NUM_TOKENS=${MAX_NUM_TOKENS:-16384}
KV_FRACTION=${KV_FRACTION:-0.85}
HTTP_PORT=${HTTP_PORT:-8000}
GRPC_PORT=${GRPC_PORT:-8001}
METRICS_PORT=${METRICS_PORT:-8002}
EPOCHS=${EPOCHS:-2}
BATCH_SIZE=${BATCH_SIZE:-8}
GRAD_ACCUM=${GRAD_ACCUM:-4}
LR=${LR:-1e-5}
REFERENCE_DROP=${REFERENCE_DROP:-0.3}
CONVERT_ARGS=${CONVERT_ARGS:-}
BUILD_ARGS=${BUILD_ARGS:-}

HF_DIR="$WORK/hf-judge"
CKPT_DIR="$WORK/ckpt"
ENGINE_DIR="$WORK/engine"

say() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: run this inside the Triton TensorRT-LLM container"; }

stage_finetune() {
  [ -n "$TRAIN_FILES" ] || die "set TRAIN_FILES to the gold-format JSONL files to fine-tune on"
  local extra=()
  # shellcheck disable=SC2206  # word splitting of the file lists is intended
  [ -n "$EVAL_FILES" ] && extra+=(--eval $EVAL_FILES)
  [ -n "$TEACHER" ] && extra+=(--teacher "$TEACHER")
  say "fine-tuning $BASE_MODEL -> $HF_DIR"
  # shellcheck disable=SC2086
  python3 "$HERE/finetune.py" --base-model "$BASE_MODEL" --train $TRAIN_FILES --out "$HF_DIR" \
    --epochs "$EPOCHS" --batch-size "$BATCH_SIZE" --grad-accum "$GRAD_ACCUM" --lr "$LR" \
    --max-input-len "$MAX_INPUT_LEN" --reference-drop "$REFERENCE_DROP" "${extra[@]}"
}

find_convert_script() {
  if [ -n "$CONVERT_SCRIPT" ]; then echo "$CONVERT_SCRIPT"; return; fi
  local candidate
  for candidate in "$TRTLLM_SRC/examples/models/core/$MODEL_FAMILY/convert_checkpoint.py" \
                   "$TRTLLM_SRC/examples/$MODEL_FAMILY/convert_checkpoint.py"; do
    if [ -f "$candidate" ]; then echo "$candidate"; return; fi
  done
  die "no convert_checkpoint.py for $MODEL_FAMILY under $TRTLLM_SRC/examples: set TRTLLM_SRC or CONVERT_SCRIPT"
}

stage_convert() {
  [ -f "$HF_DIR/config.json" ] || die "no fine-tuned model in $HF_DIR: run the finetune stage first"
  local script
  script=$(find_convert_script)
  say "converting $HF_DIR -> TensorRT-LLM checkpoint $CKPT_DIR ($script)"
  # shellcheck disable=SC2086  # CONVERT_ARGS is a list of flags
  python3 "$script" --model_dir "$HF_DIR" --output_dir "$CKPT_DIR" --dtype "$DTYPE" --tp_size 1 $CONVERT_ARGS
}

stage_engine() {
  need trtllm-build
  [ -f "$CKPT_DIR/config.json" ] || die "no checkpoint in $CKPT_DIR: run the convert stage first"
  local help gather=()
  help=$(trtllm-build --help 2>&1 || true)
  # Generation logits: a build flag up to the versions that gather them at runtime without one.
  if grep -q -- '--gather_generation_logits' <<<"$help"; then gather=(--gather_generation_logits); fi
  say "building the engine -> $ENGINE_DIR"
  # shellcheck disable=SC2086  # BUILD_ARGS is a list of flags
  trtllm-build --checkpoint_dir "$CKPT_DIR" --output_dir "$ENGINE_DIR" \
    --gemm_plugin "$DTYPE" \
    --max_batch_size "$MAX_BATCH_SIZE" \
    --max_input_len "$MAX_INPUT_LEN" \
    --max_seq_len "$((MAX_INPUT_LEN + 1))" \
    --max_num_tokens "$MAX_NUM_TOKENS" \
    --max_beam_width 1 \
    --remove_input_padding enable \
    --paged_kv_cache enable \
    --context_fmha enable \
    --logits_dtype float32 \
    "${gather[@]}" $BUILD_ARGS
}

calibrated() {  # temperature of a kind from the fine-tune's calibration.json (1.0 without one)
  python3 - "$HF_DIR/calibration.json" "$1" <<'PY'
import json, sys
try:
    print(float(json.load(open(sys.argv[1])).get(sys.argv[2], 1.0)))
except FileNotFoundError:
    print(1.0)
PY
}

stage_repository() {
  [ -f "$ENGINE_DIR/config.json" ] || die "no engine in $ENGINE_DIR: run the engine stage first"
  say "assembling the Triton repository $REPOSITORY (served from $SERVE_ROOT)"
  python3 "$HERE/assemble.py" --dest "$REPOSITORY" \
    --set "engine_dir=$SERVE_ROOT/tensorrt_llm/1" \
    --set "tokenizer_dir=$SERVE_ROOT/preprocessing/1/tokenizer" \
    --set "max_input_len=$MAX_INPUT_LEN" \
    --set "kv_cache_free_gpu_mem_fraction=$KV_FRACTION" \
    --set "temperature_pairwise=$(calibrated pairwise)" \
    --set "temperature_pointwise=$(calibrated pointwise)"
  cp -r "$ENGINE_DIR"/. "$REPOSITORY/tensorrt_llm/1/"
  python3 - "$HF_DIR" "$REPOSITORY/preprocessing/1/tokenizer" <<'PY'
import sys
from transformers import AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])
PY
  say "repository ready: $REPOSITORY"
}

serve_args() {  # the tritonserver command line, in the array SERVE
  SERVE=(tritonserver --model-repository="$REPOSITORY" --model-control-mode=explicit
    --load-model=ensemble --load-model=judge
    --http-port="$HTTP_PORT" --grpc-port="$GRPC_PORT" --metrics-port="$METRICS_PORT")
}

stage_serve() {
  need tritonserver
  serve_args
  say "serving $REPOSITORY (models: judge, ensemble and its steps)"
  exec "${SERVE[@]}"
}

stage_check() {  # start the server, wait until ready, run the smoke check, stop the server it started
  need tritonserver
  need curl
  local log="$WORK/tritonserver.log" ready=0
  serve_args
  "${SERVE[@]}" >"$log" 2>&1 &
  CHECK_PID=$!
  trap 'kill "$CHECK_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$HTTP_PORT/v2/health/ready" >/dev/null; then ready=1; break; fi
    kill -0 "$CHECK_PID" 2>/dev/null || break
    sleep 2
  done
  [ "$ready" = 1 ] || { tail -n 50 "$log" >&2; die "tritonserver did not become ready (log $log)"; }
  python3 "$HERE/smoke.py" --url "http://127.0.0.1:$HTTP_PORT"
}

main() {
  local stages=("$@")
  [ "${#stages[@]}" -gt 0 ] || stages=(finetune convert engine repository)
  mkdir -p "$WORK"
  local s
  for s in "${stages[@]}"; do
    case "$s" in
      finetune|convert|engine|repository|serve|check) "stage_$s" ;;
      *) die "unknown stage $s (finetune convert engine repository serve check)" ;;
    esac
  done
}

main "$@"
