"""tunesmith board: a local web page that watches, compares, starts and stops the runs under a folder.

It reads run folders only (trainer_log.jsonl, trainer_state.json, tunesmith_config.yaml, checkpoint-*/, plots, the
run lock) and writes only when the user starts or stops a run (RUNS_DIR/.board/<name>/). Nothing from
tunesmith.train is imported: a run is a `tunesmith train` subprocess.
"""
