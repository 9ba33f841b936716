"""Training: data statistics, loss, optimiser, the jitted step, checkpoints and the loop."""
