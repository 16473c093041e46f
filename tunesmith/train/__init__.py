"""The training engine: the loop (trainer), loss, optimizers and plugins, schedules, precision, callbacks."""
