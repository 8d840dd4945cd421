"""The dev batches a run's report times, padded to --max_seq_length and length-bucketed: one
sample of the first dev split for the dense and the compact model in Keras
(`apps.prune.report`) and for every exported runtime (`apps.prune.runtime_table`), so that
every figure of a report is timed on the same examples."""

import numpy as np


def timed_batches(run, paddings=("fixed", "bucketed"), batch_size=None, limit=None):
    """The dev batches the report times, for each of `paddings` ("fixed": every batch padded
    to --max_seq_length; "bucketed": to the length buckets a service would run), of
    `batch_size` examples (default --eval_batch_size): `limit` (default --report_examples)
    examples of the first dev split, drawn once (seed 0, kept in their order) so that the
    sample's lengths are the split's; all of it when the split is no larger or the limit is
    0. The split's tokenization is the run's own (tokenized once). Returns
    `({padding: batches}, examples timed, examples in the split)`."""
    from keras_flop import glue

    args, data = run.args, run.data
    tokenized = data.tokenized(next(iter(data.evals)))
    total = len(tokenized)
    limit = getattr(args, "report_examples", 0) if limit is None else limit
    keep = None
    if limit and total > limit:
        keep = np.sort(np.random.default_rng(0).choice(total, limit, replace=False))
    batches = {}
    for padding in paddings:
        chosen = tokenized.select(keep, pad_to_max_length=padding == "fixed")
        batches[padding] = [x for x, _ in glue.make_dataset(chosen, data.task, None,
                                                            batch_size or args.eval_batch_size)]
    return batches, total if keep is None else len(keep), total


def timed_text(timed, total):
    """What the report's latencies were measured on, in words."""
    return "whole dev set" if timed == total else f"{timed} of {total} dev examples"
