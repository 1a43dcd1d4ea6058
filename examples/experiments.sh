#!/usr/bin/env bash
# Reruns the analogues of the 2017 thesis's experiments 1-11 on the data in ../shared
# (see ../shared/DATA.md), writes one report per experiment to $OUT, then prints the
# results table (scripts/experiments_table.py). Results and discussion: docs/experiments.md.
#
#   bash examples/experiments.sh [OUT]        (default OUT=runs/experiments)
#
# Splits: faces are reported on fer2013/val (the official PublicTest images), never used
# for training or model selection (train-video holds 10% of fer2013/train out to pick the
# epoch). Speech is speaker-independent: the held-out actors/speakers below never appear in
# training or in the choice of C and gamma. Fusion has only the six CREMA-D clips of actor
# 1001 with both a face and a voice: enough to show the fused pipeline runs, far too few to
# rank methods, and no paired training data for the feature-level methods (10, 11).
# About 30 minutes on 2 CPU cores (SHARED=/path/to/shared to point elsewhere).
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${1:-runs/experiments}
CACHE=${CACHE:-runs/voice-cache}   # voice features are computed once and reused by every voice run
mkdir -p "$OUT"
RAVDESS_TEST=ravdess_02,ravdess_03,ravdess_15,ravdess_16   # 2 male (odd) + 2 female (even) actors
EMODB_TEST=emodb_03,emodb_08                                 # 1 male + 1 female speaker

# Experiments 1-2 (thesis: VGG-Face, frozen, retrained FC heads). VGG-Face weights cannot be
# shipped; with them: --backbone vggface --weights PATH --head exp1|exp2 (docs/vggface.md).
# Analogue we can run: the thesis's FC 512 -> FC 256 head on the frozen FER2013 mini-Xception,
# against emo's default network trained end to end (the shipped model).
emo train-video "$SHARED/data/fer2013/train" --backbone "mini-xception:$SHARED/weights/emotion_model.hdf5" \
    --epochs 5 --out "$OUT/exp2_minixception_head" 2> "$OUT/exp2_minixception_head.log"
emo evaluate "$SHARED/data/fer2013/val" --no-detect --modality face --bundle "$OUT/exp2_minixception_head" \
    --report "$OUT/exp2_minixception_head.json" > /dev/null
emo evaluate "$SHARED/data/fer2013/val" --no-detect --modality face --bundle models/default \
    --report "$OUT/exp_default_face.json" > /dev/null

# Experiments 3-6: voice on RAVDESS, EmoDB and both, classes balanced or not; the thesis's 68
# statistics and emo's 289 ("rich"), no speed augmentation (the shipped model adds it).
for fs in thesis68 rich; do
  for balanced in no-balanced balanced; do
    emo train-audio "$SHARED/data/ravdess" --test-speakers "$RAVDESS_TEST" --"$balanced" --no-augment \
        --feature-set "$fs" --cache "$CACHE" --out "$OUT/voice_${fs}_ravdess_$balanced" \
        2> "$OUT/voice_${fs}_ravdess_$balanced.log"
    emo train-audio "$SHARED/data/emodb" --test-speakers "$EMODB_TEST" --"$balanced" --no-augment \
        --feature-set "$fs" --cache "$CACHE" --out "$OUT/voice_${fs}_emodb_$balanced" \
        2> "$OUT/voice_${fs}_emodb_$balanced.log"
    emo train-audio "$SHARED/data/ravdess" "$SHARED/data/emodb" --test-speakers "$RAVDESS_TEST,$EMODB_TEST" \
        --"$balanced" --no-augment --feature-set "$fs" --cache "$CACHE" --out "$OUT/voice_${fs}_both_$balanced" \
        2> "$OUT/voice_${fs}_both_$balanced.log"
  done
done

# The models trained on both corpora, scored on each corpus's held-out speakers alone
# (a CSV manifest: path,label,split,speaker).
python - "$SHARED" "$OUT" <<'PY'
import csv, sys
from pathlib import Path
shared, out = Path(sys.argv[1]).resolve() / "data", Path(sys.argv[2])
rav = {"01": "neutral", "03": "happy", "04": "sad", "05": "anger", "06": "fear", "07": "disgust", "08": "surprise"}
rows = [(f, rav[f.stem.split("-")[2]], "test", "ravdess_" + f.stem.split("-")[6])
        for f in sorted((shared / "ravdess").glob("Actor_*/*.flac"))
        if f.stem.split("-")[2] in rav and f.stem.split("-")[6] in ("02", "03", "15", "16")]
with open(out / "ravdess_heldout.csv", "w", newline="") as fh:
    csv.writer(fh).writerows([("path", "label", "split", "speaker"), *rows])
PY
for fs in thesis68 rich; do
  emo evaluate "$OUT/ravdess_heldout.csv" --modality voice --bundle "$OUT/voice_${fs}_both_balanced" \
      --report "$OUT/voice_${fs}_both_balanced_on_ravdess_heldout.json" > /dev/null
done

# Experiments 7-9: decision-level fusion on the paired clips (CREMA-D, 6 clips of one actor):
# equal weights (7) and per-emotion weights from the two validation confusion matrices (8-9;
# one table: each emotion leans to the modality with the higher recall).
CREMA="$OUT/cremad_avi"
mkdir -p "$CREMA"
cp examples/1001_DFA_*_XX.avi "$CREMA/"
for method in equal confusion; do
  B="$OUT/fusion_$method"
  rm -rf "$B" && cp -r models/default "$B"
  emo fuse "$B" --method "$method"
  emo evaluate "$CREMA" --layout cremad --bundle "$B" --report "$OUT/exp_fusion_$method.json" > /dev/null || true
done
python scripts/experiments_table.py "$OUT"
