#!/usr/bin/env bash
# The main job, end to end on a fresh machine (6 min 22 s measured on 2 CPU cores, plus the install):
#   install -> train a small MoCo v2 teacher, a SEED student from it, and the same student
#      from scratch (MoCo v2, same images and epochs) on Fashion-MNIST
#   -> evaluate raw pixels, teacher, SEED student and from-scratch student side by side
#      (weighted k-NN) and state the points SEED added over the same-budget student
#   -> export the student to ONNX (validated against torch) and time torch vs ONNX Runtime
#   -> save it with its generated model card, publish it (hub when HF_ENDPOINT and HF_TOKEN are
#      set, else the local Hugging Face cache) and load it back in one line.
# Figures are those of a SHORT run on a subset of Fashion-MNIST, not of the paper recipes.
# Re-running continues where an interrupted run stopped (training resumes from its checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SEEDZOO_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh

OUT=${SEEDZOO_MAIN_JOB_DIR:-runs/main_job}
REPO_ID=${SEEDZOO_REPO_ID:-seedzoo/main-job-seed-mobilenetv3-fmnist}
EVAL="seedzoo eval --dataset fashion-mnist --protocol knn --limit-train 20000 --limit-test 5000"
mkdir -p "$OUT"
SECONDS=0

train() {  # train NAME CONFIG [--set ...]: resume when the run folder already has a checkpoint
    local name=$1 config=$2; shift 2
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: already trained"; return; fi
    local resume=(); [ -f "$OUT/$name/checkpoint.pt" ] && resume=(--resume)
    echo "== training $name ($config)"
    seedzoo train --config "$config" --out "$OUT/$name" "${resume[@]}" "$@"
}

train teacher configs/fmnist/main_job/teacher.yaml
train student configs/fmnist/main_job/student.yaml --set method.teacher.source="$OUT/teacher/encoder"
train scratch configs/fmnist/main_job/scratch.yaml

echo "== evaluating raw pixels, teacher, SEED student and from-scratch student on Fashion-MNIST"
$EVAL --model pixels --out "$OUT/eval_pixels.json" --quiet
for name in teacher student scratch; do
    $EVAL --model "$OUT/$name/encoder" --out "$OUT/eval_$name.json" --quiet
done
python scripts/compare_evals.py pixels="$OUT/eval_pixels.json" teacher="$OUT/eval_teacher.json" \
    seed_student="$OUT/eval_student.json" scratch_student="$OUT/eval_scratch.json" \
    --lift seed_student:scratch_student

echo "== exporting the student to ONNX and timing it against torch"
seedzoo export --model "$OUT/student/encoder" --out "$OUT/student.onnx"
seedzoo bench --model "$OUT/student/encoder" --onnx "$OUT/student.onnx" \
    --batch-sizes 1,32 --threads 2 --budget 3 --out "$OUT/bench_student.json"

echo "== saving the student with its model card, publishing it and loading it back"
seedzoo push "$OUT/student" "$REPO_ID" --to auto --eval "$OUT/eval_student.json" \
    --bench "$OUT/bench_student.json" --check
# Published to the local cache (no endpoint and token): load it from there without asking the hub.
offline=1; [ -n "${HF_ENDPOINT:-}" ] && [ -n "${HF_TOKEN:-}" ] && offline=0
HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-$offline} python - "$OUT/student/encoder" "$REPO_ID" <<'PY'
import sys, torch, seedzoo
folder, repo_id = sys.argv[1:]
model = seedzoo.load(f"hf-hub:{repo_id}")            # the one-liner users run
x = torch.randn(2, *model.pretrained_cfg["input_size"])
same = torch.equal(model(x), seedzoo.load(folder)(x))
print(f"seedzoo.load('hf-hub:{repo_id}') -> {type(model).__name__}, outputs match the trained student: {same}")
sys.exit(0 if same else 1)
PY
echo "== main job done in $((SECONDS / 60)) min $((SECONDS % 60)) s; results in $OUT"
