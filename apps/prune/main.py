"""`python -m apps.prune`: the settings resolved, the run directory prepared by the chief,
the pipeline run, and the exit status (3 when the compact model fell short of its target)."""

import sys

from apps import common
from apps import workers as workers_module
from apps.prune.parser import EXIT_SHORT, build_parser
from apps.prune.pipeline import Pipeline
from apps.prune.run_dir import prepare_run
from apps.prune.settings import resolve_args


@common.main_wrapper
def run(args):
    args = resolve_args(args)
    if args.mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
    common.set_seed(args.seed, not args.nondeterministic)
    strategy = workers_module.make_strategy(args.strategy, args.tpu)
    with workers_module.Workers(strategy, run_dir=args.output_dir,
                                timeout=args.worker_timeout) as workers, strategy.scope():
        # Every worker checks the run directory as it is; then the chief prepares it.
        run_dir = prepare_run(args, write=False)
        workers.agree("checking the run directory")
        if workers.chief:
            prepare_run(args)
        workers.agree("preparing the run directory")
        pipeline = Pipeline(args, run_dir, workers)
        pipeline.run()
    logs = ", TensorBoard logs in prune/logs" if args.method == "lagrangian" else ""
    if not workers.chief:
        print(f"\nWorker {workers.index} of {workers.count} done; the chief (worker 0) wrote "
              f"the outputs to {run_dir}.")
    else:
        print(f"\nAll outputs are in {run_dir}: report.md, info.txt (compact/), the SavedModel "
              f"in export/{logs}.")
    if args.toy:
        print("To run on real data: python -m apps.prune --task sst2 --data_dir GLUE_DIR "
              "--init_checkpoint BERT_CHECKPOINT_DIR --output_dir runs/sst2")
    what = "latency sparsity (1 - latency/dense, predicted)" if pipeline.latency_cost() \
        else "sparsity"
    short = pipeline.shortfall(what)
    if short and not args.allow_short:
        print(f"error: {short}", file=sys.stderr)
        sys.exit(EXIT_SHORT)
    return run_dir


def main(argv=None):
    return run(build_parser(), argv)
