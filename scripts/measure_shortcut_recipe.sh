#!/usr/bin/env bash
# One seed of the shortcut measurements of the current CPU_RECIPE (issue 14), into one folder:
#   OUT/teacher, OUT/distill           the quickstart's models (teacher -> distilled student), seeded with SEED
#   OUT/audit_teacher, audit_distill   `hf-deitcxr audit` of each on the validation split
#   OUT/loso                           `hf-deitcxr loso` (teacher, quickstart budget) with the same recipe and seed
# Then `python scripts/shortcut_recipe_tables.py --before ... --after ...` sets seeds of two recipes side by side.
# Usage (from the repository root, ../shared/data/cxr3 present): scripts/measure_shortcut_recipe.sh SEED OUT
set -euo pipefail
seed=${1:?usage: measure_shortcut_recipe.sh SEED OUT}
out=${2:?usage: measure_shortcut_recipe.sh SEED OUT}
data=${DATASET:-../shared/data/cxr3}
export OMP_WAIT_POLICY=PASSIVE  # spinning OpenMP threads slow a shared 2-core machine many-fold
mkdir -p "$out"
hf-deitcxr quickstart --dataset "$data" --seed "$seed" --output_dir "$out" > "$out/quickstart.log" 2>&1
for model in teacher distill; do
  hf-deitcxr audit "$out/$model" --dataset "$data" --split validation --output_dir "$out/audit_$model" \
    > "$out/audit_$model.log" 2>&1
done
hf-deitcxr loso --dataset "$data" --seed "$seed" --output_dir "$out/loso" --pixel_cache_dir "$out/pixel_cache" \
  > "$out/loso.log" 2>&1
rm -rf "$out/pixel_cache" "$out"/loso/teacher-*/checkpoint-*
echo "[measure_shortcut_recipe] seed $seed done: $out"
