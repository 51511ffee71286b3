#!/usr/bin/env bash
# SimCLRv2 on Fashion-MNIST (CPU-sized), through `seedzoo pipeline simclrv2`: a ResNet-50
# pretrained with SimCLRv2 (10,000 images, 3 epochs), fine-tuned on 1% and 10% of the labels of
# the seeded 20,000-image subset (the few-shot probe's labels), each distilled into ResNet-18 and
# MobileNet-v3-Large on 10,000 unlabelled images for 3 epochs (the distillation study's budget).
# Shared steps are trained once. Every exported network is evaluated as in
# benchmarks/fmnist_distillation.sh (k-NN, linear, few-shot on the seeded 20,000 / 5,000 subsets),
# and those with a classifier also as classifiers on the same test images. Beside them: the same
# students trained on the same labels alone (configs/fmnist/supervised/<student>.yaml on the
# fine-tuning's labelled images, batch and epochs).
#   bash benchmarks/fmnist_simclrv2.sh [1pct|10pct ...] [resnet18|mobilenetv3_large_100 ...]
# Resumable: finished steps and evaluations are skipped, an interrupted step resumes. Runs go to
# runs/fmnist_simclrv2/<recipe name>; JSONs to benchmarks/results/fmnist_simclrv2/.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=benchmarks/results/fmnist_simclrv2
OUT=runs/fmnist_simclrv2
RECIPES=configs/fmnist/simclrv2
mkdir -p "$RESULTS"

fractions=(); students=()
for arg in "$@"; do
    case $arg in *pct) fractions+=("$arg") ;; *) students+=("$arg") ;; esac
done
[ ${#fractions[@]} -gt 0 ] || fractions=(1pct 10pct)
[ ${#students[@]} -gt 0 ] || students=(resnet18 mobilenetv3_large_100)

for fraction in "${fractions[@]}"; do
    for student in "${students[@]}"; do
        echo "== pipeline ${fraction} -> ${student}, $(date -u +%H:%M:%S)"
        seedzoo pipeline simclrv2 --out "$OUT" "$RECIPES/pretrain_resnet50.yaml" \
            "$RECIPES/finetune_resnet50_${fraction}.yaml" \
            "$RECIPES/distill_resnet50_${fraction}_to_${student}.yaml"
    done
done

# The same students trained on the same labels alone (the paper's comparison): the supervised
# recipe on the fine-tuning's labelled images, batch and epochs.
declare -A BATCH=([1pct]=32 [10pct]=64) EPOCHS=([1pct]=30 [10pct]=8) FRACTION=([1pct]=0.01 [10pct]=0.1)
for fraction in "${fractions[@]}"; do
    for student in "${students[@]}"; do
        out="$OUT/supervised_${student}_${fraction}"
        [ -f "$out/summary.json" ] && continue
        resume=(); [ -f "$out/checkpoint.pt" ] && resume=(--resume)
        echo "== supervised ${student} on ${fraction} of the labels, $(date -u +%H:%M:%S)"
        seedzoo train --config "configs/fmnist/supervised/${student}.yaml" --out "$out" \
            --set data.limit=20000 --set "data.label_fraction=${FRACTION[$fraction]}" \
            --set "data.batch_size=${BATCH[$fraction]}" --set "train.epochs=${EPOCHS[$fraction]}" \
            "${resume[@]}"
    done
done

for run in "$OUT"/*/; do
    name=$(basename "$run")
    [ -f "$run/summary.json" ] || continue
    cp "$run/summary.json" "$RESULTS/${name}_summary.json"
    for config in "$run"/*/config.json; do
        network_dir=$(dirname "$config"); network=$(basename "$network_dir")
        eval_json="$RESULTS/eval_${name}_${network}.json"
        [ -f "$eval_json" ] && continue
        protocols=knn,linear,fewshot
        [ -f "$network_dir/classifier.safetensors" ] && protocols=$protocols,classifier
        echo "== evaluating $name/$network ($protocols), $(date -u +%H:%M:%S)"
        seedzoo eval --model "$network_dir" --dataset fashion-mnist --limit-train 20000 \
            --limit-test 5000 --protocol "$protocols" --out "$eval_json" --quiet
    done
done
python benchmarks/distillation_table.py "$RESULTS"
