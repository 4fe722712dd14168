"""Performance benchmarks for ckd_tune (not tests): run them with ``python -m benchmarks``.

Each benchmark measures one claim about the package side by side (same model, data and
epochs), writes ``benchmarks/results/<name>.json`` (machine, settings, every repetition, the
summary, the target and whether it was met) and contributes one row to the final table.
See ``benchmarks/README.md``.
"""
