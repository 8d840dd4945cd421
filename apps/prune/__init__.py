"""The whole FLOP pipeline on a GLUE task: fine-tune, factorize, prune, compact, fine-tune
again, export, report.

    python -m apps.prune                      # built-in toy task, offline, a few minutes
    python -m apps.prune --task sst2 --data_dir GLUE_DIR --init_checkpoint CKPT_DIR \\
        --output_dir runs/sst2 --target_sparsity 0.5

`CKPT_DIR` is a BERT checkpoint of any of three kinds, told apart by its files: a TF1
checkpoint, a Hugging Face BERT, RoBERTa, XLM-RoBERTa or DistilBERT directory or a keras-hub
preset directory.

Every step writes its outputs under `OUTPUT_DIR/<step>/` before the next starts. Rerunning the
same command continues after the last finished step (Ctrl-C, then the same command, continues
the pruning step from its last checkpoint); `--start_from STEP` redoes that step and those
after it, also with changed settings that only that step and later ones use (the error names
the step when others changed). Steps: finetune (skipped for a fine-tuned checkpoint),
factorize, prune, compact, finetune_compact, export, report. `--method fisher` replaces
factorize and prune by one retraining-free step, fisher (`keras_flop.prune_post_training`), and
skips the final fine-tuning unless `--final_epochs` asks for it. `--targets 0.3,0.5,0.7` (or
`--target_speedups 1.5,2,3`) prunes a family in one run: each member gets its own compact
model (`compact/<i>/`), fine-tuned model, SavedModel version (`export/<i>/`) and report row.
"""

from apps.prune.main import main, run
from apps.prune.parser import EXIT_SHORT, FISHER_STEPS, STEPS, STRUCTURES, build_parser
from apps.prune.pipeline import Pipeline
from apps.prune.run_dir import CONTINUED, INIT_MASK, prepare_run
from apps.prune.settings import FIRST_STEP_USING, first_step_using, resolve_args

__all__ = ["CONTINUED", "EXIT_SHORT", "FIRST_STEP_USING", "FISHER_STEPS", "INIT_MASK",
           "Pipeline", "STEPS", "STRUCTURES", "build_parser", "first_step_using", "main",
           "prepare_run", "resolve_args", "run"]
