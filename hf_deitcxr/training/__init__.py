"""Training: arguments, model building, the frozen teacher (`teacher`), the `DistillationTrainer`, the harness every
run shares with mammography (`harness`: seeding, trainer set-up, resume, save-and-evaluate) and the chest X-ray stage
runner (`run`)."""
