"""``python -m ckd_tune.search``: tune every KD method with an equal budget, then compare them.

Per method: Optuna TPE (or random) sampling through Ray Tune's ``OptunaSearch``, every trial run
to the end (FIFO; ASHA optional, never judging a trial before its annealing ends), one MLflow run
per trial; then a sweep summary and the comparison report. The protocol is argued in
``docs/protocol.md``.

One job a module, each imported on its own (this file imports none of them, so that
``ckd_tune.search.summary`` comes without the CLI or Ray Tune):

- :mod:`~ckd_tune.search.cli`: the argument parser and :func:`~ckd_tune.search.cli.main`;
- :mod:`~ckd_tune.search.sweep`: one task's sweep, step by step (bench, Ray, one search per
  method, summary, table, report);
- :mod:`~ckd_tune.search.study`: a multi-task study (``--task sst2,cola,rte`` or ``all``): each
  task's sweep in turn under one MLflow run, then the cross-task report;
- :mod:`~ckd_tune.search.estimate`: a task's expected time on this machine, from timed steps;
- :mod:`~ckd_tune.search.plan`: the checks of the flags, the search spaces and the tracking
  server, and the validated :class:`~ckd_tune.search.plan.Plan` (a study's:
  :class:`~ckd_tune.search.plan.Study`);
- :mod:`~ckd_tune.search.tuner`: searcher, scheduler, trainable and run config -> a Ray Tune
  ``Tuner`` per method, run or resumed;
- :mod:`~ckd_tune.search.summary`: :class:`~ckd_tune.search.summary.MethodSummary` (what the
  report reads), the best finished trial, and the sweep's MLflow summary run;
- :mod:`~ckd_tune.search.table`: the final console table.
"""
