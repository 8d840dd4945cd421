"""Training: optimizers and schedules, callbacks, distillation, `tf.distribute` support and
seeding."""
