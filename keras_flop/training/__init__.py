"""Training: optimizers and schedules, callbacks, distillation, data and seeding."""
