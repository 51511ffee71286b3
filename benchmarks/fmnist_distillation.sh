#!/usr/bin/env bash
# The distillation comparison on Fashion-MNIST (CPU-sized): every method on the ResNet-18 and
# MobileNet-v3-Large students
# with the same data budget (10,000 training images, 3 epochs, batch 128, 32 px), each evaluated
# with k-NN (k 10/20/100/200), the linear probe and few-shot 1%/10% on the seeded 20,000 / 5,000
# subsets. Resumable: a finished run or evaluation is skipped (also on a fresh checkout, from its
# committed JSONs), an interrupted training resumes.
#   bash benchmarks/fmnist_distillation.sh [RUN ...]     (default: all, in the order below)
# Runs go to runs/<name>; evaluation JSONs and training summaries to
# benchmarks/results/fmnist_distillation/.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=benchmarks/results/fmnist_distillation
mkdir -p "$RESULTS"

# name recipe [KEY=VALUE ...: --set overrides] (teachers before the runs that read them:
# runs/<name> is what the recipes name)
RUNS=(
  "fmnist_supervised_resnet50 configs/fmnist/supervised/resnet50.yaml"
  "fmnist_supervised_resnet18 configs/fmnist/supervised/resnet18.yaml"
  "fmnist_kd_resnet50_to_resnet18 configs/fmnist/kd/resnet50_to_resnet18.yaml"
  "fmnist_moco_resnet50 configs/fmnist/teachers/moco_resnet50.yaml"
  "fmnist_crd_resnet50_to_resnet18 configs/fmnist/crd/resnet50_to_resnet18.yaml"
  "fmnist_dogo_resnet18_mobilenetv3_large_100 configs/fmnist/dogo/resnet18_mobilenetv3_large_100.yaml"
  "fmnist_moco_resnet18 configs/fmnist/baselines/moco_resnet18_10k_3ep.yaml"
  "fmnist_resnet50_to_resnet18 configs/fmnist/seed/resnet50_to_resnet18.yaml"
  "fmnist_supervised_mobilenetv3_large_100 configs/fmnist/supervised/mobilenetv3_large_100.yaml"
  "fmnist_kd_resnet50_to_mobilenetv3_large_100 configs/fmnist/kd/resnet50_to_mobilenetv3_large_100.yaml"
  "fmnist_crd_resnet50_to_mobilenetv3_large_100 configs/fmnist/crd/resnet50_to_mobilenetv3_large_100.yaml"
  "fmnist_resnet50_to_mobilenetv3 configs/fmnist/seed/resnet50_to_mobilenetv3_large_100.yaml"
  "fmnist_moco_mobilenetv3 configs/fmnist/baselines/moco_mobilenetv3_large_100_10k_3ep.yaml"
  "fmnist_crd_kd_resnet50_to_resnet18 configs/fmnist/crd_kd/resnet50_to_resnet18.yaml"
  "fmnist_crd_kd_resnet50_to_mobilenetv3_large_100 configs/fmnist/crd_kd/resnet50_to_mobilenetv3_large_100.yaml"
  "fmnist_esvit_swin_micro configs/fmnist/esvit/swin_micro.yaml"
  "fmnist_esvit_swin_micro_view_only configs/fmnist/esvit/swin_micro.yaml method.region_loss=false"
)

run() {  # run NAME RECIPE [KEY=VALUE ...]: train (or resume, or skip), then evaluate each
    # exported network
    local name=$1 recipe=$2 out=runs/$1 overrides=()
    for override in "${@:3}"; do overrides+=(--set "$override"); done
    if [ -f "$RESULTS/${name}_summary.json" ] && [ ! -d "$out" ] \
            && compgen -G "$RESULTS/eval_${name}_*.json" > /dev/null; then
        echo "== $name: already trained and evaluated (its JSONs are in $RESULTS)"; return
    fi
    if [ ! -f "$out/summary.json" ]; then
        local resume=(); [ -f "$out/checkpoint.pt" ] && resume=(--resume)
        echo "== training $name ($recipe), $(date -u +%H:%M:%S)"
        /usr/bin/time -f "$name: %e s wall" -a -o "$RESULTS/wall_times.txt" \
            seedzoo train --config "$recipe" --out "$out" "${overrides[@]}" "${resume[@]}"
    fi
    cp "$out/summary.json" "$RESULTS/${name}_summary.json"
    for config in "$out"/*/config.json; do
        local network; network=$(basename "$(dirname "$config")")
        local eval_json="$RESULTS/eval_${name}_${network}.json"
        [ -f "$eval_json" ] && continue
        echo "== evaluating $name/$network, $(date -u +%H:%M:%S)"
        seedzoo eval --model "$out/$network" --dataset fashion-mnist --limit-train 20000 \
            --limit-test 5000 --out "$eval_json" --quiet
    done
}

wanted=("$@")
for entry in "${RUNS[@]}"; do
    read -r name recipe overrides <<< "$entry"
    if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]]; then
        # shellcheck disable=SC2086  # the overrides are words
        run "$name" "$recipe" $overrides
    fi
done
python benchmarks/distillation_table.py "$RESULTS"
