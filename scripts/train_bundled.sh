#!/usr/bin/env bash
# Reproduce the bundled weights with the repo's own recipe.
#   bash scripts/train_bundled.sh teacher          # SyncNetFCN teacher                -> runs/teacher.pt
#   bash scripts/train_bundled.sh distill          # X3D student distilled from it      -> runs/student_distilled.pt
#   bash scripts/train_bundled.sh student-direct   # X3D student trained without a teacher (baseline row)
#   bash scripts/train_bundled.sh bundle           # hold-out eval, float16 copies + ONNX artifact in edge_sync/weights/
# Every stage is resumable: rerun the same line after an interruption (same settings).
#
# This 2-core CPU (defaults): batch 16, one data worker, OMP_NUM_THREADS=1; the student takes ~52 min, the teacher
# several hours. The bundled teacher and student were trained on one H200 with
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 bash scripts/train_bundled.sh teacher   (3000 steps, 24 min)
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 bash scripts/train_bundled.sh distill   (2500 steps, 22 min)
# (BANK=400: only the first 400 utterances of the speech bank, copied there because espeak-ng is not installed;
#  point EDGE_SYNC_CACHE at the copied bank.)
# ARCH=int8: the INT8-friendly student (ReLU, no squeeze-excite), whose INT8 artifacts run faster than FP32 on
# onnxruntime; the bundled student is this one:
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 ARCH=int8 bash scripts/train_bundled.sh distill   (2500 steps, 11 min)
#
# The ablation rows (issue #4; docs/ablation.md), the teacher's recipe (3000 steps, AdamW 2e-3, CE, augmentation):
#   bash scripts/train_bundled.sh legacy-baseline    # SyncNet S architecture      -> runs/legacy_baseline.pt
#   bash scripts/train_bundled.sh teacher-attention  # teacher + cross-modal attention -> runs/teacher_attention.pt
#   bash scripts/train_bundled.sh teacher-infonce    # teacher, CE + InfoNCE (context protocol) -> runs/teacher_infonce.pt
#   bash scripts/train_bundled.sh ablation-train     # the three above in one process on one stream of batches
#   bash scripts/train_bundled.sh context-train      # two more context-protocol tries, together: CE + triplet
#                                                    # (runs/teacher_triplet.pt), CE + CE on the correlation
#                                                    # (runs/teacher_corrce.pt)
#   bash scripts/train_bundled.sh ablation           # the table: edge-sync eval --ablation -> docs/ablation.md/.json
#
# The bundled teacher is runs/teacher.pt fine-tuned in three stages for the strict context protocol (the model sees
# only a c-frame window): + correlation CE + the window loss (window_ce) on windows of 5..10, then 5..8 (x2), then
# exactly 5 (x3), at falling learning rates (docs/ablation.md; 2,796 s in all on one H200 with the teacher stage):
#   DEVICE=cuda BATCH=32 WORKERS=14 BANK=400 bash scripts/train_bundled.sh teacher-context
#                                                    # -> runs/teacher_window_corr.pt, teacher_window2_short.pt,
#                                                    #    teacher_window3_five.pt (the bundled one)
#   bash scripts/train_bundled.sh bundle-teacher     # hold-out eval, then edge_sync/weights/teacher.pt/.json
# The real-footage teacher (issue 15): Light-ASD's real-face encoders (MIT; pass the file
# weight/finetuning_TalkSet.model of github.com/Junhua-Liao/Light-ASD) frozen, the projections and sync head trained on
# their features of the `real` clips of ../shared/real_clips outside scripts/real_holdout.txt (trunk_features: ~5 min
# on this 2-core CPU), then scored on the hold-out:
#   LIGHT_ASD=PATH bash scripts/train_bundled.sh teacher-real   # -> runs/teacher_real.pt, runs/eval_teacher_real.md
# REALIGN=1 realigns the training clips that scripts/real_published_offsets.tsv lists as late as published
# (measured by scripts/landmark_av_lag.py, docs/real_footage.md). The bundled student and 'teacher-real' (session 10)
# came from this chain; the GPU steps ran on one H100 (1,300 s of training in all, 3 calls):
#   REALIGN=1 LIGHT_ASD=PATH bash scripts/train_bundled.sh teacher-real                      # CPU, 715 s (*)
#   REALIGN=1 DEVICE=cuda WORKERS=7 STEPS=3000 END_AT=500 OUT=runs/teacher_real_ft1.pt \
#     bash scripts/train_bundled.sh teacher-real-ft                                          # (*)
#   REALIGN=1 DEVICE=cuda WORKERS=5 TEACHER=runs/teacher_real_ft1.pt STEPS=800 LR=1e-4 WARMUP=20 WINDOW=1 \
#     bash scripts/train_bundled.sh teacher-real-ft                                          # -> runs/teacher_real_ft.pt
#   REALIGN=1 DEVICE=cuda WORKERS=7 BANK=56 TEACHER=runs/teacher_real_ft.pt STUDENT=runs/student_real.pt SYNTH=0.25 \
#     STEPS=1000 BATCH=32 WINDOW=1 OUT=runs/student_real_ft.pt bash scripts/train_bundled.sh student-real   # 293 s
#   REALIGN=1 bash scripts/train_bundled.sh bundle-student-real
# (*) with the offsets list of commit 6819d48 (vr_5 -2 instead of pcavs_741400163 +2); the GPU run started from a
# float16 copy of runs/teacher_real.pt. runs/student_real.pt is the student bundled before this chain: `teacher-real`
# and then `student-real`, both without REALIGN, run before the first line above overwrites runs/teacher_real.pt.
# Session 13 (issue 15; docs/real_footage.md, not bundled): the bundled student distilled 800 more steps from the bundled
# teacher-real, with and without the poorer-camera augmentation, both at once on one H100 (374 s):
#   REALIGN=1 DEVICE=cuda WORKERS=7 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=edge_sync/weights/student.pt \
#     SYNTH=0.25 STEPS=800 LR=5e-4 BATCH=32 WINDOW=1 [DEGRADE=1] OUT=runs/s13_deg.pt bash scripts/train_bundled.sh student-real
# Session 14 (issue 15): the bundled student is the session-10 student distilled 1000 more steps from the bundled
# teacher-real, half synthetic clips, the window loss at weight 2 on windows of 5..8 frames, degrade; on one H200
# (728 s, two calls: cut at step 600 by the call's limit, then resumed; another variant trained beside it), then
# bundled with its INT8 artifact (calibrated on the training clips) and refitted heads and evidence floor:
#   REALIGN=1 DEVICE=cuda WORKERS=7 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=edge_sync/weights/student.pt \
#     SYNTH=0.5 STEPS=1000 LR=5e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=2.0 WINDOW_MAX=8 DEGRADE=1 OUT=runs/s14_w8.pt \
#     bash scripts/train_bundled.sh student-real
#   REALIGN=1 STUDENT_REAL=runs/s14_w8.pt TEACHER_REAL=edge_sync/weights/teacher_real.pt \
#     STUDENT_STAGES=edge_sync/weights/student.pt bash scripts/train_bundled.sh bundle-student-real
# Session 15 (issue 15; docs/real_footage.md, not bundled): four more distillations of the bundled student on one H100,
# e.g. the last stage on windows of exactly 5 frames (w5; cut at step 500 by the call's limit) and the relational
# video distillation with five StyleTalk clips (stvr; EXTRA from scripts/extra_real_clips.sh):
#   REALIGN=1 DEVICE=cuda WORKERS=7 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=edge_sync/weights/student.pt \
#     SYNTH=0.5 STEPS=700 LR=2e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=5 DEGRADE=1 OUT=runs/s15_w5.pt \
#     bash scripts/train_bundled.sh student-real
#   REALIGN=1 EXTRA=../extra_real_train DEVICE=cuda WORKERS=14 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt \
#     STUDENT=edge_sync/weights/student.pt SYNTH=0.5 STEPS=900 LR=3e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=2.0 WINDOW_MAX=8 \
#     DEGRADE=1 VIDEO_RELATION=4.0 OUT=runs/s15_stvr.pt bash scripts/train_bundled.sh student-real   # 323 s
# Session 16 (issue 15; docs/real_footage.md, not bundled), one run per call on one H100 (14 data workers): the bundled
# student reshaped for short windows (temporal kernel 3: k3; then FrameMotion2d after video stages 1 and 2: k3m), and
# the bundled student with a stronger colour jitter, the channel augmentation and audio_relation (robust; cut at
# step 1100 of 1200 by the call's limit):
#   KERNEL=3 OUT=runs/s16_k3_start.pt bash scripts/train_bundled.sh reshape-student
#   REALIGN=1 DEVICE=cuda WORKERS=14 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=runs/s16_k3_start.pt \
#     SYNTH=0.5 STEPS=1200 LR=5e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 DEGRADE=1 OUT=runs/s16_k3.pt \
#     bash scripts/train_bundled.sh student-real   # 435 s
#   STUDENT=runs/s16_k3.pt MOTION="1 2" OUT=runs/s16_k3m_start.pt bash scripts/train_bundled.sh reshape-student
#   (then student-real as for k3 from runs/s16_k3m_start.pt, OUT=runs/s16_k3m.pt; 449 s). k3m_cpu: runs/s16_k3m.pt with
#   its motion blocks' BatchNorm weights set to 0.25, then on the 2-core CPU (33 min):
#   .venv/bin/python -c "from edge_sync.models import io; m = io.load('runs/s16_k3m.pt')
#   [b.temporal[1].weight.data.fill_(0.25) for b in m.video_encoder.motion.values()]
#   io.save_checkpoint(m, 'runs/s16_k3m_g.pt')"
#   REALIGN=1 DEVICE=cpu WORKERS=1 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=runs/s16_k3m_g.pt SYNTH=0.5 \
#     STEPS=900 LR=3e-4 BATCH=16 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 DEGRADE=1 OUT=runs/s16_k3m_cpu.pt \
#     bash scripts/train_bundled.sh student-real
#   (k3m_ft: the same from runs/s16_k3m_cpu.pt with STEPS=600 LR=1e-4 WINDOW_WEIGHT=1.0 OUT=runs/s16_k3m_ft.pt; 21 min)
#   REALIGN=1 DEVICE=cuda WORKERS=14 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=edge_sync/weights/student.pt \
#     SYNTH=0.5 STEPS=1200 END_AT=1100 LR=3e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=2.0 WINDOW_MAX=8 DEGRADE=1 CHANNEL=1 \
#     COLOUR=strong AUDIO_RELATION=2.0 OUT=runs/s16_robust.pt bash scripts/train_bundled.sh student-real   # 426 s
# Session 17 (issue 15; docs/real_footage.md, not bundled). On one H100: DEVICE=cuda WORKERS=14 BANK=400 STEPS=1000
# bash scripts/train_bundled.sh student-shapes (cut at step 470 by the call's limit; scored at the step-400 states).
# On this 2-core CPU, the window-context loss on the bundled student, (a) synthetic only, 200 steps, with and
# without it (8 min each):
#   .venv/bin/edge-sync train --config CFG --steps 200 --batch-size 16 --frames 40 --lr 3e-4 -o runs/s17cpu/ab_with.pt
#   (CFG: {"model": "edge_sync/weights/student.pt", "augment": {"crop": true, "flip": true, "colour": true,
#   "freq_mask": true}, "loss": {"ce": 1.0, "corr_ce": 0.5, "corr_temperature": 0.07, "window_ce": 3.0,
#   "window_min_frames": 5, "window_max_frames": 8, "window_context": 8.0}}; ab_without: "window_context": 0.0)
# (b) in the real-footage recipe (18 min):
#   REALIGN=1 DEVICE=cpu WORKERS=1 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=edge_sync/weights/student.pt \
#     SYNTH=0.5 STEPS=600 LR=3e-4 BATCH=16 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 DEGRADE=1 WINDOW_CONTEXT=8.0 \
#     OUT=runs/s17_wc_cpu.pt bash scripts/train_bundled.sh student-real
# (c) two students from scratch on one stream of batches (the bundled shape, and temporal kernel 3 with FrameMotion2d
#   after every video stage), 400 steps, no teacher (22 min): python -m edge_sync.training.together --steps 400
#   --batch-size 16 --frames 40 --lr 3e-3 --run student:A.json:runs/s17cpu/A.pt --run student:C.json:runs/s17cpu/C.pt
#   (A.json / C.json: speech_bank 400, the int8-friendly model_config, C's with temporal_kernel 3 on both trunks and
#   motion_stages [0, 1, 2]; the loss of (a))
# Session 18 (issue 15; docs/real_footage.md, not bundled). On one H100: the session-17 call's step-400 states of C and
# E resumed to the end of their 1,000-step schedule (session 17's command with A left out; 301 s), then
# student-real on each (306 s each):
#   SHAPES="C E" DEVICE=cuda WORKERS=14 BANK=400 STEPS=1000 bash scripts/train_bundled.sh student-shapes
#   REALIGN=1 DEVICE=cuda WORKERS=14 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=runs/student_shape_E.pt \
#     SYNTH=0.5 STEPS=1000 LR=1e-3 BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 DEGRADE=1 \
#     OUT=runs/s18_e_real.pt bash scripts/train_bundled.sh student-real                        # (C: the same from _C)
# On this 2-core CPU, E's real stage with and without a teacher for its synthetic clips, 300 steps each (both at once):
#   [SYNTH_TEACHER=edge_sync/weights/teacher.pt] REALIGN=1 DEVICE=cpu WORKERS=0 BANK=56 \
#     TEACHER=edge_sync/weights/teacher_real.pt STUDENT=runs/student_shape_E.pt SYNTH=0.5 STEPS=300 LR=1e-3 BATCH=16 \
#     WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 DEGRADE=1 OUT=runs/s18_ab_with.pt \
#     bash scripts/train_bundled.sh student-real
# and with SYNTH_TEACHER at LR=3e-4 (WORKERS=1, alone: 20 min); E's step-400 state (runs/s17cpu/gpu_E.pt) with
# STEPS=800 at LR=1e-3, no SYNTH_TEACHER (28 min); C (runs/student_shape_C.pt) with SYNTH_TEACHER, STEPS=400, LR=3e-4
# (WORKERS=1, beside a CI run: 25 min).
# Session 19 (issue 15; docs/real_footage.md, not bundled). On one H100: C's second synthetic schedule from the end of
# its first (cut at step 1056 by the call's limit, resumed: 555 + 75 s), then its real stage with SYNTH_TEACHER at
# LR=3e-4, 1300 steps (cut at step 1299, resumed: 500 + 78 s):
#   DEVICE=cuda WORKERS=14 BANK=400 STUDENT=runs/student_shape_C.pt STEPS=1100 LR=1e-3 OUT=runs/student_shape_C2.pt \
#     bash scripts/train_bundled.sh student-shape-again
#   SYNTH_TEACHER=edge_sync/weights/teacher.pt REALIGN=1 DEVICE=cuda WORKERS=14 BANK=56 \
#     TEACHER=edge_sync/weights/teacher_real.pt STUDENT=runs/student_shape_C2.pt SYNTH=0.5 STEPS=1300 LR=3e-4 BATCH=32 \
#     WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 DEGRADE=1 OUT=runs/s19_c_real.pt \
#     bash scripts/train_bundled.sh student-real
# then on this 2-core CPU, 500 more steps of the same from it (26 min): the same line with DEVICE=cpu WORKERS=1 BATCH=16
# STEPS=500 LR=2e-4 STUDENT=runs/s19_c_real.pt OUT=runs/s19_c_real_cpu.pt; again from that (29 min, OUT=..._cpu2.pt)
# and from that (31 min, OUT=..._cpu3.pt: the hold-out level with the bundled student);
# then a synthetic-only polish (16 min; it cost the real clips):
#   STUDENT=runs/s19_c_real_cpu2.pt STEPS=200 LR=1e-4 BATCH=16 BANK=56 OUT=runs/s19_c_polish.pt \
#     bash scripts/train_bundled.sh student-shape-again
# Session 22 (issue 15; docs/real_footage.md, not bundled). C's second synthetic schedule finished on this CPU
# (checkpoints/student_shape_C2.pt, checkpoints/README.md); on one H100 (scripts/device_run.sh, REAL=.gpu/rt: a copy
# of the training clips), its real stage (C3, 241 s) and two continuations at LR=2e-4 (C4, C5: 339 + 355 s):
#   SYNTH_TEACHER=edge_sync/weights/teacher.pt REALIGN=1 DEVICE=cuda WORKERS=14 BANK=56 \
#     TEACHER=edge_sync/weights/teacher_real.pt STUDENT=checkpoints/student_shape_C2.pt SYNTH=0.5 STEPS=1300 LR=3e-4 \
#     BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 DEGRADE=1 OUT=runs/gpu/C3.pt \
#     bash scripts/train_bundled.sh student-real
#   the same line with STUDENT=runs/gpu/C3.pt STEPS=2000 LR=2e-4 OUT=runs/gpu/C4.pt, then STUDENT=runs/gpu/C4.pt
#   OUT=runs/gpu/C5.pt (each call with STOP_AFTER_S set from its time left; the same line resumes it)
# Session 24 (issue 15): the student bundled then. C's two synthetic schedules (checkpoints/student_shape_C.pt, _C2.pt;
# checkpoints/README.md), then its real stage on more faces (SUSPECTS=1: the real-suspect clips realigned by
# teacher-real's reading; EXTRA + EXTRA_PSEUDO=0: StyleTalk's five clean clips, scripts/extra_real_clips.sh; the
# lent machine had a copy of that folder without its pseudo-labels) with 65% synthetic clips, on
# one H100 beside two SYNTH=0.5 seeds (three at once, 1,063 s; three calls, each stopped by STOP_AFTER_S and resumed):
#   SYNTH_TEACHER=edge_sync/weights/teacher.pt REALIGN=1 SUSPECTS=1 EXTRA=../extra_real_train EXTRA_PSEUDO=0 \
#     DEVICE=cuda WORKERS=4 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=checkpoints/student_shape_C2.pt \
#     SYNTH=0.65 SEED=0 STEPS=1300 LR=3e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 \
#     DEGRADE=1 OUT=runs/student_real_q2.pt bash scripts/train_bundled.sh student-real
#   REALIGN=1 STUDENT_REAL=runs/student_real_q2.pt TEACHER_REAL=edge_sync/weights/teacher_real.pt \
#     STUDENT_STAGES="checkpoints/student_shape_C.pt checkpoints/student_shape_C2.pt" \
#     bash scripts/train_bundled.sh bundle-student-real
# Session 25 (issue 15): the bundled student. The same recipe with the four pseudo-labelled StyleTalk clips that session
# 24's run missed (EXTRA_PSEUDO left at its default: 45 usable clips), seed 0: 1,003 steps on one H100 beside a seed-1
# run (two calls, stopped by STOP_AFTER_S), the last 297 resumed from its train-state on this 2-core CPU (DEVICE=cpu
# WORKERS=2, the same line otherwise; device and workers may change on resume), 2,659 s there:
#   SYNTH_TEACHER=edge_sync/weights/teacher.pt REALIGN=1 SUSPECTS=1 EXTRA=../extra_real_train \
#     DEVICE=cuda WORKERS=4 BANK=56 TEACHER=edge_sync/weights/teacher_real.pt STUDENT=checkpoints/student_shape_C2.pt \
#     SYNTH=0.65 SEED=0 STEPS=1300 LR=3e-4 BATCH=32 WINDOW=1 WINDOW_WEIGHT=3.0 WINDOW_MAX=8 WINDOW_CONTEXT=8.0 \
#     DEGRADE=1 OUT=runs/student_real_r0.pt bash scripts/train_bundled.sh student-real
#   REALIGN=1 STUDENT_REAL=runs/student_real_r0.pt TEACHER_REAL=edge_sync/weights/teacher_real.pt \
#     STUDENT_STAGES="checkpoints/student_shape_C.pt checkpoints/student_shape_C2.pt" \
#     bash scripts/train_bundled.sh bundle-student-real
# Issue 19's options (I3D / SlowFast trunks, masked / contrastive pre-training; docs/ablation_options.md), on one H100
# (session 11; the runs were cut at END_AT by the calls' time limits):
#   REALIGN=1 DEVICE=cuda WORKERS=6 BANK=56 END_AT=850 bash scripts/train_bundled.sh options-trunks     # 493 s
#   REALIGN=1 DEVICE=cuda WORKERS=7 END_AT=300 bash scripts/train_bundled.sh options-pretrain   # 67 + 114 + 131 s
#   bash scripts/train_bundled.sh ablation-options                     # 2,365 s on this 2-core CPU
# (the pre-training rows came from a second call, after pretrain learned to shuffle each pass; the control row, which
#  pre-trains nothing, from the first)
# The legacy model (13.6 M parameters, 224x224 input) takes days on this 2-core CPU; on one GPU `ablation-train`
# makes each batch once for all three models (DEVICE=cuda BATCH=32 WORKERS=14 BANK=400, as above).
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/edge-sync
[ -x "$E" ] || E="python3 -m edge_sync.cli"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkcfg() {  # mkcfg MODEL_CONFIG [LOSS] -> path of a TrainConfig JSON with the shared fields
  local f
  f=$(mktemp --suffix .json)
  echo "{${BANK:+\"speech_bank\": $BANK, }\"checkpoint_every\": 250, \"model_config\": $1${2:+, \"loss\": $2}}" > "$f"
  echo "$f"
}
model_config='{}'
if [ "${ARCH:-}" = int8 ]; then
  model_config='{"video_trunk_kwargs": {"act": "relu", "se": false}, "audio_trunk_kwargs": {"act": "relu"}}'
fi
cfg=$(mkcfg "$model_config")
cfg_plain=$(mkcfg '{}')
cfg_attention=$(mkcfg '{"attention": true}')
cfg_infonce=$(mkcfg '{}' '{"ce": 1.0, "info_nce": 1.0}')
cfg_triplet=$(mkcfg '{}' '{"ce": 1.0, "triplet": 1.0}')
cfg_corrce=$(mkcfg '{}' '{"ce": 1.0, "corr_ce": 1.0}')
window_cfg() {  # window_cfg WEIGHT MIN MAX -> a fine-tune config: CE + correlation CE + window CE, short warm-up
  local f
  f=$(mktemp --suffix .json)
  echo "{${BANK:+\"speech_bank\": $BANK, }\"checkpoint_every\": 250, \"warmup_steps\": 50, \"loss\": {\"ce\": 1.0," \
       "\"corr_ce\": 1.0, \"window_ce\": $1, \"window_min_frames\": $2, \"window_max_frames\": $3}}" > "$f"
  echo "$f"
}
SHARED=(--batch-size "${BATCH:-16}" --frames 40 --workers "${WORKERS:-1}" --device "${DEVICE:-auto}")
COMMON=("${SHARED[@]}" --config "$cfg")
TEACHER_RECIPE=(--steps "${STEPS:-3000}" --lr 2e-3 --half "${SHARED[@]}")
shape_distill_config() {  # shape_distill_config MODEL_KEY -> the JSON config of student-shapes' distillation (the
                         # synthetic teacher's logits and correlation, the window loss and window_context from the
                         # start) with MODEL_KEY ("model_config": ... or "model": ...) added
  echo "{\"teacher\": \"edge_sync/weights/teacher.pt\", \"speech_bank\": ${BANK:-400}, \"checkpoint_every\": 100, $1," \
       "\"loss\": {\"ce\": 1.0, \"distill\": 1.0, \"corr_ce\": 0.5, \"corr_distill\": 1.0, \"corr_temperature\": 0.07," \
       "\"window_ce\": 3.0, \"window_min_frames\": 5, \"window_max_frames\": 8, \"window_context\": 8.0}}"
}
# STOP_AFTER_S=SECONDS (any stage below that passes "${STOP[@]}"): stop after the step that ends past that many
# seconds and save the state, for a machine lent for a fixed time; the same command resumes. Its eval waits for the end.
# The seconds count from the first training step, after the data set-up (1-2 min for student-real on a lent H100): set
# it >= 170 s under the call's limit, or the call is cut before the state is saved and its steps are lost (session 26).
STOP=(${STOP_AFTER_S:+--stop-after-seconds "$STOP_AFTER_S"})
finished() {  # finished CHECKPOINT: its run wrote it at its train-state's step (STOP_AFTER_S saves only the state)
  if $PY -c 'import sys; from edge_sync.training.train import is_finished; sys.exit(not is_finished(sys.argv[1]))' \
    "$1"; then return 0; fi
  echo "$1: stopped before the end of its schedule; run the same command again to resume"; return 1
}
score_holdout() {  # score_holdout CLIPS_DIR CHECKPOINT [MODEL...]: a real stage's closing score on the in-sync
                  # hold-out, skipped with a line where CLIPS_DIR lacks it (a lent machine given only the training clips)
  local real=$1 out=$2 f missing=0
  shift 2
  for f in $(grep -v '^#' scripts/real_holdout_in_sync.txt); do [ -e "$real/$f" ] || missing=$((missing + 1)); done
  if [ "$missing" -gt 0 ]; then
    echo "$real lacks $missing hold-out clips: not scored here (edge-sync eval --data ../shared/real_clips --clips" \
         "scripts/real_holdout_in_sync.txt --model $out)"
    return 0
  fi
  $E eval --data "$real" --clips scripts/real_holdout_in_sync.txt --model "$out" "$@" -o "${out%.pt}_eval.json" \
    | tee "${out%.pt}_eval.md"
}
# the shared options of student-shapes' and student-shape-again's distillations (python -m edge_sync.training.together)
SHAPE_RUNS=(--batch-size "${BATCH:-32}" --frames 40 --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" --half
            ${END_AT:+--end-at "$END_AT"} "${STOP[@]}")
real_train_dir() {  # real_train_dir CLIPS_DIR -> a temp folder of links to its training clips (REALIGN, SUSPECTS, EXTRA)
  bash scripts/real_train_dir.sh "$1"
}
stage=${1:-}
case "$stage" in
  teacher)        $E train --model teacher --steps "${STEPS:-3000}" --lr 2e-3 --half "${COMMON[@]}" -o runs/teacher.pt ;;
  distill)        $E distill --teacher runs/teacher.pt --steps "${STEPS:-2500}" --lr 3e-3 --half "${COMMON[@]}" \
                    -o runs/student_distilled.pt ;;
  student-direct) $E train --model student --steps "${STEPS:-2500}" --lr 3e-3 "${COMMON[@]}" -o runs/student_direct.pt ;;
  legacy-baseline)   $E train --model legacy "${TEACHER_RECIPE[@]}" --config "$cfg_plain" -o runs/legacy_baseline.pt ;;
  teacher-attention) $E train --model teacher "${TEACHER_RECIPE[@]}" --config "$cfg_attention" \
                       -o runs/teacher_attention.pt ;;
  teacher-infonce)   $E train --model teacher "${TEACHER_RECIPE[@]}" --config "$cfg_infonce" -o runs/teacher_infonce.pt ;;
  ablation-train)
    $PY -m edge_sync.training.together "${TEACHER_RECIPE[@]}" --run "legacy:$cfg_plain:runs/legacy_baseline.pt" \
      --run "teacher:$cfg_attention:runs/teacher_attention.pt" --run "teacher:$cfg_infonce:runs/teacher_infonce.pt" ;;
  context-train)
    $PY -m edge_sync.training.together "${TEACHER_RECIPE[@]}" --run "teacher:$cfg_triplet:runs/teacher_triplet.pt" \
      --run "teacher:$cfg_corrce:runs/teacher_corrce.pt" ;;
  teacher-context)  # three fine-tunes of runs/teacher.pt, each from the last (seeds 1, 2, 3: fresh clips)
    FT=("${SHARED[@]}" --half)
    $E train --model runs/teacher.pt --steps 900 --lr 5e-4 --seed 1 "${FT[@]}" --config "$(window_cfg 1.0 5 10)" \
      -o runs/teacher_window_corr.pt
    $E train --model runs/teacher_window_corr.pt --steps 950 --lr 3e-4 --seed 2 "${FT[@]}" \
      --config "$(window_cfg 2.0 5 8)" -o runs/teacher_window2_short.pt
    $E train --model runs/teacher_window2_short.pt --steps 900 --lr 2.5e-4 --seed 3 "${FT[@]}" \
      --config "$(window_cfg 3.0 5 5)" -o runs/teacher_window3_five.pt ;;
  teacher-real)
    weights=${LIGHT_ASD:?set LIGHT_ASD to Light-ASD\'s weight/finetuning_TalkSet.model (github.com/Junhua-Liao/Light-ASD)}
    real=${REAL:-../shared/real_clips}
    f=$(mktemp --suffix .json)
    echo "{\"model_config\": {\"video_trunk\": \"light_asd_visual\", \"audio_trunk\": \"light_asd_mfcc\"," \
         "\"video_trunk_kwargs\": {\"weights\": \"$weights\"}, \"audio_trunk_kwargs\": {\"weights\": \"$weights\"}," \
         "\"embed_dim\": 64}, \"cache_dir\": \"runs/real_cache\", \"trunk_features\": true, \"augment\": null, \"checkpoint_every\": 100000," \
         "\"loss\": {\"ce\": 1.0, \"corr_ce\": 1.0, \"corr_temperature\": 0.07}}" > "$f"
    $E train --model teacher --data "$(real_train_dir "$real")" --steps "${STEPS:-2000}" --batch-size 32 --frames 40 \
      --lr 2e-3 --workers 0 --device "${DEVICE:-auto}" --config "$f" -o runs/teacher_real.pt
    $E eval --data "$real" --clips scripts/real_holdout.txt --model runs/teacher_real.pt --model student \
      -o runs/eval_teacher_real.json | tee runs/eval_teacher_real.md ;;
  teacher-real-ft)  # a real-face teacher fine-tuned end to end (Light-ASD's trunks too) on raw augmented windows of
                    # the same clips (and, with WINDOW=1, the window loss); each step runs both trunks forward and
                    # backward, so this stage is for a GPU. TEACHER (start), OUT, STEPS, LR, WARMUP, END_AT (stop at
                    # that step of the STEPS schedule: the bundled chain's first run was cut by a time limit)
    real=${REAL:-../shared/real_clips}
    out=${OUT:-runs/teacher_real_ft.pt}
    f=$(mktemp --suffix .json)
    win=""; [ -n "${WINDOW:-}" ] && win=', "window_ce": 1.0, "window_min_frames": 5, "window_max_frames": 10'
    echo "{\"cache_dir\": \"runs/real_cache\", \"checkpoint_every\": 250, \"warmup_steps\": ${WARMUP:-50}," \
         "\"augment\": {\"crop\": true, \"flip\": true, \"colour\": true, \"freq_mask\": true}," \
         "\"loss\": {\"ce\": 1.0, \"corr_ce\": 1.0, \"corr_temperature\": 0.07$win}}" > "$f"
    $E train --model "${TEACHER:-runs/teacher_real.pt}" --data "$(real_train_dir "$real")" --steps "${STEPS:-2500}" \
      --batch-size 32 --frames 40 --lr "${LR:-3e-4}" --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" \
      --config "$f" ${END_AT:+--end-at "$END_AT"} "${STOP[@]}" -o "$out"
    finished "$out" || exit 0
    score_holdout "$real" "$out" ;;
  teacher-stacked)  # the bundled teacher's trunks (synthetic mouths) and Light-ASD's (real faces) side by side, both
                    # frozen; projections and head trained on their features of the real clips and of a pool of
                    # synthetic ones, so one teacher serves real people and the synthetic protocol
    weights=${LIGHT_ASD:?set LIGHT_ASD to Light-ASD\'s weight/finetuning_TalkSet.model (github.com/Junhua-Liao/Light-ASD)}
    real=${REAL:-../shared/real_clips}
    base=${TEACHER:-edge_sync/weights/teacher.pt}
    f=$(mktemp --suffix .json)
    echo "{\"model_config\": {\"video_trunk\": \"stacked\", \"video_trunk_kwargs\": {\"trunks\": [" \
         "{\"name\": \"syncnet_conv3d\", \"weights\": \"$base\", \"select_prefix\": \"video_encoder.\"}," \
         "{\"name\": \"light_asd_visual\", \"kwargs\": {\"weights\": \"$weights\"}}]}," \
         "\"audio_trunk\": \"stacked\", \"audio_trunk_kwargs\": {\"trunks\": [" \
         "{\"name\": \"syncnet_mfcc\", \"weights\": \"$base\", \"select_prefix\": \"audio_encoder.\"}," \
         "{\"name\": \"light_asd_mfcc\", \"kwargs\": {\"weights\": \"$weights\"}}]}}," \
         "\"trunk_features\": true, \"synthetic_fraction\": 0.5, \"synthetic_pool\": ${POOL:-256}," \
         "\"augment\": null, \"checkpoint_every\": 100000," \
         "\"loss\": {\"ce\": 1.0, \"corr_ce\": 1.0, \"corr_temperature\": 0.07}}" > "$f"
    $E train --model teacher --data "$(real_train_dir "$real")" --steps "${STEPS:-3000}" --batch-size 32 --frames 40 \
      --lr 2e-3 --workers 0 --device "${DEVICE:-auto}" --config "$f" -o runs/teacher_stacked.pt
    $E eval --data "$real" --clips scripts/real_holdout.txt --model runs/teacher_stacked.pt \
      -o runs/eval_teacher_stacked.json | tee runs/eval_teacher_stacked.md
    $E eval --model runs/teacher_stacked.pt --model teacher --count 200 --frames 50 --seed 1000 \
      -o runs/eval_teacher_stacked_synthetic.json | tee runs/eval_teacher_stacked_synthetic.md ;;
  student-real)  # the synthetic student (`distill`) fine-tuned on the same real clips (+ SYNTH of synthetic ones, so it
                 # keeps what it knew), distilled from a real-face teacher (TEACHER), whose trunk features are
                 # computed per batch; STUDENT (start), OUT, STEPS, BATCH, WINDOW=1 (the window loss on windows of
                 # 5..WINDOW_MAX frames, default 10, at weight WINDOW_WEIGHT, default 1), DEGRADE=1 (the poorer-camera
                 # augmentation), CHANNEL=1 (the microphone/room augmentation of the MFCC), COLOUR=strong (brightness
                 # +-0.3, contrast and saturation x0.4..1.6 instead of +-0.2), VIDEO_RELATION=W / AUDIO_RELATION=W (the
                 # teacher's frame-to-frame video / audio similarities at weight W), WINDOW_CONTEXT=W (with WINDOW=1:
                 # the windows' embeddings pulled towards the whole clip's, window_context_loss, at weight W),
                 # SYNTH_TEACHER=PATH (a teacher for the synthetic clips mixed in, e.g. the bundled synthetic teacher
                 # edge_sync/weights/teacher.pt, instead of their labels alone; the relations above then read the
                 # real clips' rows only), SEED (the run's seed, default 0: fresh windows and augmentation)
    real=${REAL:-../shared/real_clips}
    out=${OUT:-runs/student_real.pt}
    colour=true
    [ "${COLOUR:-}" != strong ] || colour='{"p": 0.8, "brightness": 0.3, "contrast": 0.6, "saturation": 0.3}'
    f=$(mktemp --suffix .json)
    echo "{\"model\": \"${STUDENT:-runs/student_distilled.pt}\", \"teacher_trunk_features\": true," \
         "\"synthetic_fraction\": ${SYNTH:-0.5}, ${SYNTH_TEACHER:+\"synthetic_teacher\": \"$SYNTH_TEACHER\", }${BANK:+\"speech_bank\": $BANK, }\"checkpoint_every\": 100," \
         "\"augment\": {\"crop\": true, \"flip\": true, \"colour\": $colour, \"freq_mask\": true$([ "${DEGRADE:-0}" = 1 ] && echo ", \"degrade\": true")$([ "${CHANNEL:-0}" = 1 ] && echo ", \"channel\": true")}," \
         "\"loss\": {\"ce\": 1.0, \"corr_ce\": 0.5, \"corr_distill\": 1.0, \"corr_temperature\": 0.07${WINDOW:+, \"window_ce\": ${WINDOW_WEIGHT:-1.0}, \"window_min_frames\": 5, \"window_max_frames\": ${WINDOW_MAX:-10}}${WINDOW_CONTEXT:+, \"window_context\": $WINDOW_CONTEXT}${VIDEO_RELATION:+, \"video_relation\": $VIDEO_RELATION}${AUDIO_RELATION:+, \"audio_relation\": $AUDIO_RELATION}}}" > "$f"
    $E distill --teacher "${TEACHER:-runs/teacher_real.pt}" --data "$(real_train_dir "$real")" --steps "${STEPS:-1500}" \
      --batch-size "${BATCH:-16}" --frames 40 --lr "${LR:-1e-3}" --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" \
      --config "$f" ${SEED:+--seed "$SEED"} ${END_AT:+--end-at "$END_AT"} "${STOP[@]}" -o "$out"
    finished "$out" || exit 0
    score_holdout "$real" "$out" --model student ;;
  student-shapes)  # three students distilled from scratch from the bundled teacher on synthetic clips, together on one
                   # stream of batches, the window loss and window_context from the start: the bundled shape (A),
                   # temporal kernel 3 with FrameMotion2d after every video stage (C), and C at width 1.2 (E, 224 K
                   # parameters); OUT_DIR (default runs), STEPS, END_AT, SHAPES (default "A C E": which of them)
    d=${OUT_DIR:-runs}
    runs=()
    int8='"act": "relu"'  # the INT8-friendly student (ReLU; no squeeze-excite in the video trunk)
    for row in "A|{$int8, \"se\": false}|{$int8}" \
               "C|{$int8, \"se\": false, \"temporal_kernel\": 3, \"motion_stages\": [0, 1, 2]}|{$int8, \"temporal_kernel\": 3}" \
               "E|{$int8, \"se\": false, \"temporal_kernel\": 3, \"motion_stages\": [0, 1, 2], \"width\": 1.2}|{$int8, \"temporal_kernel\": 3}"; do
      IFS='|' read -r name video audio <<< "$row"
      [[ " ${SHAPES:-A C E} " == *" $name "* ]] || continue
      f=$(mktemp --suffix .json)
      shape_distill_config "\"model_config\": {\"video_trunk_kwargs\": $video, \"audio_trunk_kwargs\": $audio}" > "$f"
      runs+=(--run "student:$f:$d/student_shape_$name.pt")
    done
    $PY -m edge_sync.training.together --steps "${STEPS:-1500}" --lr 3e-3 "${SHAPE_RUNS[@]}" "${runs[@]}" ;;
  student-shape-again)  # a second synthetic schedule (a warm restart at a lower peak lr) for a student-shapes student
                        # at the end of its own: STUDENT (default runs/student_shape_C.pt), STEPS (1100), LR (1e-3),
                        # OUT (runs/student_shape_C2.pt); the same teacher, data and losses as student-shapes
    f=$(mktemp --suffix .json)
    student=${STUDENT:-runs/student_shape_C.pt}
    shape_distill_config "\"model\": \"$student\"" > "$f"
    $PY -m edge_sync.training.together --steps "${STEPS:-1100}" --lr "${LR:-1e-3}" "${SHAPE_RUNS[@]}" \
      --run "$student:$f:${OUT:-runs/student_shape_C2.pt}" ;;
  reshape-student)  # the student STUDENT (default: the bundled one) carried over to temporal kernel KERNEL (both
                    # trunks) and/or FrameMotion2d blocks after the video stages MOTION (e.g. "1 2"), as OUT: centre
                    # taps kept, new blocks the identity (edge_sync.training.reshape); then student-real trains it
    .venv/bin/python scripts/reshape_student.py "${STUDENT:-edge_sync/weights/student.pt}" "${OUT:-runs/student_reshaped.pt}" \
      ${KERNEL:+--temporal-kernel "$KERNEL"} ${MOTION:+--motion-stages $MOTION} ;;
  options-trunks)  # issue 19: teachers from scratch with the teacher's own video trunk, I3D and SlowFast (similar
                   # sizes), together on one stream of batches: the real training clips + a synthetic half, CE +
                   # correlation CE, 1000-step schedule (the table's rows ended at step 850: END_AT=850)
    real=${REAL:-../shared/real_clips}
    com="\"cache_dir\": \"runs/real_cache\", \"checkpoint_every\": 25, \"synthetic_fraction\": 0.5, ${BANK:+\"speech_bank\": $BANK, }\"augment\": {\"crop\": true, \"flip\": true, \"colour\": true, \"freq_mask\": true}, \"loss\": {\"ce\": 1.0, \"corr_ce\": 1.0, \"corr_temperature\": 0.07}"
    runs=()
    for row in "base:{}" "i3d:{\"video_trunk\": \"i3d\", \"video_trunk_kwargs\": {\"width\": 0.375}}" \
               "sf:{\"video_trunk\": \"slowfast\", \"video_trunk_kwargs\": {\"model_depth\": 18, \"width\": 0.375}}"; do
      f=$(mktemp --suffix .json); echo "{$com, \"model_config\": ${row#*:}}" > "$f"
      runs+=(--run "teacher:$f:runs/options_t_${row%%:*}.pt")
    done
    $PY -m edge_sync.training.together --data "$(real_train_dir "$real")" --steps "${STEPS:-1000}" --lr 2e-3 \
      --batch-size "${BATCH:-32}" --frames 40 --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" --half \
      ${END_AT:+--end-at "$END_AT"} "${runs[@]}" ;;
  options-pretrain)  # issue 19: teacher-real's encoders pre-trained self-supervised on the same clips (masked AV
                     # prediction; SimCLR contrastive), then it and both copies fine-tuned together by its last
                     # recipe (window loss, lr 1e-4; 600-step schedule, the table's rows ended at step 300: END_AT=300)
    real=${REAL:-../shared/real_clips}
    dir=$(real_train_dir "$real")
    p=$(mktemp --suffix .json); echo '{"cache_dir": "runs/real_cache", "checkpoint_every": 100}' > "$p"
    for o in masked contrastive; do
      $E pretrain --model teacher-real --data "$dir" --objective $o --steps "${PRE_STEPS:-300}" --batch-size 32 \
        --frames 40 --lr 1e-4 --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" --config "$p" -o runs/options_pre_$o.pt
    done
    f=$(mktemp --suffix .json)
    echo '{"cache_dir": "runs/real_cache", "checkpoint_every": 25, "lr": 1e-4, "warmup_steps": 20,' \
         '"augment": {"crop": true, "flip": true, "colour": true, "freq_mask": true}, "loss": {"ce": 1.0,' \
         '"corr_ce": 1.0, "corr_temperature": 0.07, "window_ce": 1.0, "window_min_frames": 5, "window_max_frames": 10}}' > "$f"
    $PY -m edge_sync.training.together --data "$dir" --steps "${STEPS:-600}" --lr 1e-4 --batch-size 32 --frames 40 \
      --workers "${WORKERS:-1}" --device "${DEVICE:-auto}" --half ${END_AT:+--end-at "$END_AT"} \
      --run "teacher-real:$f:runs/options_f_ctrl.pt" --run "runs/options_pre_masked.pt:$f:runs/options_f_masked.pt" \
      --run "runs/options_pre_contrastive.pt:$f:runs/options_f_contrastive.pt" ;;
  ablation-options)  # issue 19's table (docs/ablation_options.md): the rows above, teacher-real and the student, on
                     # the synthetic hold-out and the real in-sync hold-out, speed and size from the same run
    OMP_NUM_THREADS=$(nproc) $E eval --ablation --no-base-rows \
      --extra "teacher trunk (syncnet_conv3d), from scratch=runs/options_t_base.pt" \
      --extra "I3D trunk (width 0.375), from scratch=runs/options_t_i3d.pt" \
      --extra "SlowFast trunk (R18, width 0.375), from scratch=runs/options_t_sf.pt" \
      --extra "teacher-real fine-tuned 300 steps (control)=runs/options_f_ctrl.pt" \
      --extra "teacher-real + masked AV pre-training, then 300 steps=runs/options_f_masked.pt" \
      --extra "teacher-real + SimCLR contrastive pre-training, then 300 steps=runs/options_f_contrastive.pt" \
      --extra "bundled teacher-real=teacher-real" --extra "bundled student=student" \
      --real-data "${REAL:-../shared/real_clips}" --clips scripts/real_holdout_in_sync.txt \
      --count 100 --frames 50 --rounds 3 --repeat 5 --report docs/ablation_options.md -o docs/ablation_options.json ;;
  bundle-teacher)
    $E eval --model runs/teacher_window3_five.pt --count 200 --frames 50 --seed 1000 \
      -o runs/eval_teacher_context.json | tee runs/eval_teacher_context.md
    .venv/bin/python scripts/bundle_weights.py --teacher runs/teacher_window3_five.pt \
      --teacher-stages runs/teacher.pt runs/teacher_window_corr.pt runs/teacher_window2_short.pt \
      --eval runs/eval_teacher_context.json ;;
  ablation)  # the context-protocol tries join as extra rows where they were trained; "+ modern trunk" is the
             # teacher of the same recipe as the baseline (runs/teacher.pt), the bundled teacher an extra row
    extra=()
    for try in "infonce:CE + InfoNCE" "triplet:CE + triplet" "corrce:CE + correlation CE"; do
      f=runs/teacher_${try%%:*}.pt
      [ -f "$f" ] && extra+=(--extra "modern trunk, ${try#*:}=$f")
    done
    extra+=(--extra "bundled teacher (+ window fine-tunes)=teacher")
    OMP_NUM_THREADS=$(nproc) $E eval --ablation --legacy runs/legacy_baseline.pt --modern runs/teacher.pt \
      --attention runs/teacher_attention.pt --student student "${extra[@]}" --report docs/ablation.md \
      -o docs/ablation.json ;;
  bundle)
    student=${STUDENT:-runs/student_distilled.pt}
    $E eval --model runs/teacher.pt --model "$student" --count 200 --frames 50 --seed 1000 \
      -o runs/eval_holdout.json | tee runs/eval_holdout.md
    # a synthetic-only student's INT8 artifact is calibrated on synthetic clips (the matrix's recipe; reused if present)
    [ -f runs/calib_syn/manifest.json ] || $E calibrate --data synthetic --count 64 --frames 50 -o runs/calib_syn
    .venv/bin/python scripts/bundle_weights.py --teacher runs/teacher.pt --student "$student" --eval runs/eval_holdout.json \
      --int8-calib runs/calib_syn
    ;;
  bundle-student-real)  # the real-face student (STUDENT_REAL) becomes the bundled student (its ONNX artifact
                        # re-exported) and the real-face teacher it was distilled from (TEACHER_REAL) 'teacher-real';
                        # the student's use-case heads fitted on synthetic clips and the real clips outside the hold-out
    real=${REAL:-../shared/real_clips}
    student=${STUDENT_REAL:-runs/student_real_ft.pt}
    teacher=${TEACHER_REAL:-runs/teacher_real_ft.pt}
    $E eval --model "$student" --count 200 --frames 50 --seed 1000 -o runs/eval_bundle_real_synthetic.json
    $E eval --data "$real" --clips scripts/real_holdout.txt --model "$teacher" --model "$student" \
      -o runs/eval_bundle_real.json
    # the bundled INT8 artifact's calibration set: 64 windows of the real training clips (the clips stay outside the
    # repository; the set's id and content hash go into the artifact's manifest). An existing runs/calib_real is
    # reused: delete it after changing REAL, EXTRA or the hold-out list
    [ -f runs/calib_real/manifest.json ] || $E calibrate --data "$(real_train_dir "$real")" --count 64 -o runs/calib_real
    # teacher-real is re-bundled only when it changed (TEACHER_REAL=edge_sync/weights/teacher_real.pt keeps it)
    teacher_arg=(--teacher-real "$teacher")
    [ "$(realpath "$teacher")" != "$(realpath edge_sync/weights/teacher_real.pt)" ] || teacher_arg=()
    .venv/bin/python scripts/bundle_weights.py --student "$student" --student-stages ${STUDENT_STAGES:-runs/student_distilled.pt runs/student_real.pt} \
      ${teacher_arg[@]+"${teacher_arg[@]}"} --eval runs/eval_bundle_real_synthetic.json \
      --real-eval runs/eval_bundle_real.json --int8-calib runs/calib_real
    .venv/bin/python scripts/fit_usecases.py --real "$real" --real-holdout scripts/real_holdout.txt \
      ${REALIGN:+--real-published scripts/real_published_offsets.tsv scripts/real_holdout_offsets.tsv}
    # the evidence floor (LSE-C under which score gives no verdict and fix refuses) from the bundled FP32 and INT8
    # artifacts on the real hold-out
    $E eval --data "$real" --clips scripts/real_holdout_in_sync.txt --model edge_sync/weights/student.onnx-fp32 \
      --model edge_sync/weights/student.onnx-int8 -o runs/eval_floor.json
    .venv/bin/python scripts/fit_evidence_floor.py runs/eval_floor.json ;;
  *) echo "usage: $0 teacher | distill | student-direct | bundle | legacy-baseline | teacher-attention |" \
          "teacher-infonce | ablation-train | context-train | teacher-context | bundle-teacher | ablation |" \
          "teacher-real | teacher-real-ft | teacher-stacked | student-real | student-shapes | student-shape-again |" \
          "reshape-student |" \
          "bundle-student-real |" \
          "options-trunks | options-pretrain | ablation-options" >&2
     exit 2 ;;
esac
