"""Run machinery: config, training loop, checkpoints, devices, processes, evaluation, run folders."""
