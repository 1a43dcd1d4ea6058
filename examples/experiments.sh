#!/usr/bin/env bash
# Reruns the analogues of the 2017 thesis's experiments 1-11 on the data in ../shared
# (see ../shared/DATA.md) and writes one JSON report per experiment to $OUT.
#
#   bash examples/experiments.sh [OUT]        (default OUT=runs/experiments)
#
# Splits: faces are reported on fer2013/val (the official PublicTest images), never used
# for training or model selection (train-video holds 10% of fer2013/train out to pick the
# epoch). Speech is speaker-independent: the held-out actors/speakers below never appear in
# training or in the choice of C. Fusion has only the six CREMA-D clips of actor 1001 with
# both a face and a voice: enough to show the fused pipeline runs, far too few to rank methods.
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${1:-runs/experiments}
mkdir -p "$OUT"
RAVDESS_TEST=ravdess_02,ravdess_03,ravdess_15,ravdess_16   # 2 male (odd) + 2 female (even) actors
EMODB_TEST=emodb_03,emodb_08                                 # 1 male + 1 female speaker

# Experiments 1-2 (thesis: VGG-Face frozen, retrained heads exp1 / exp2).
# VGG-Face weights cannot be shipped; with them: --backbone vggface --weights PATH --head exp1|exp2.
# The analogue we can run: the thesis's FC 512 -> FC 256 head on the frozen FER2013 mini-Xception,
# and emo's default network trained end to end (the shipped model).
emo train-video "$SHARED/data/fer2013/train" --backbone "mini-xception:$SHARED/weights/emotion_model.hdf5" \
    --epochs 10 --out "$OUT/exp2_minixception_head"
emo evaluate "$SHARED/data/fer2013/val" --no-detect --model "$OUT/exp2_minixception_head" \
    --report "$OUT/exp2_minixception_head.json" > /dev/null
emo evaluate "$SHARED/data/fer2013/val" --no-detect --model models/default --modality face \
    --report "$OUT/exp_default_face.json" > /dev/null

# Experiments 3-6: voice on RAVDESS, EmoDB and both, class-balanced or not.
for balanced in balanced no-balanced; do
  emo train-audio "$SHARED/data/ravdess" --test-speakers "$RAVDESS_TEST" --"$balanced" \
      --out "$OUT/voice_ravdess_$balanced" 2> "$OUT/voice_ravdess_$balanced.log"
  emo train-audio "$SHARED/data/emodb" --test-speakers "$EMODB_TEST" --"$balanced" \
      --out "$OUT/voice_emodb_$balanced" 2> "$OUT/voice_emodb_$balanced.log"
  emo train-audio "$SHARED/data/ravdess" "$SHARED/data/emodb" --test-speakers "$RAVDESS_TEST,$EMODB_TEST" \
      --"$balanced" --out "$OUT/voice_both_$balanced" 2> "$OUT/voice_both_$balanced.log"
done
# the thesis's own 68 statistics, for comparison
emo train-audio "$SHARED/data/ravdess" --test-speakers "$RAVDESS_TEST" --feature-set thesis68 \
    --out "$OUT/voice_ravdess_thesis68" 2> "$OUT/voice_ravdess_thesis68.log"

# Experiments 7-11: fusion on the paired clips (CREMA-D, 6 clips of one actor).
CREMA="$OUT/cremad_avi"
mkdir -p "$CREMA"
cp examples/1001_DFA_*_XX.avi "$CREMA/"
for method in equal confusion; do
  B="$OUT/fusion_$method"
  rm -rf "$B" && cp -r models/default "$B"
  emo fuse "$B" --method "$method"
  emo evaluate "$CREMA" --layout cremad --model "$B" --report "$OUT/exp_fusion_$method.json" > /dev/null || true
done
echo "reports in $OUT"
