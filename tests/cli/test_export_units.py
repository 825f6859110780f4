from lmtune.cli.views import hf_training_arguments


def test_hf_export_gives_max_steps_in_the_trials_own_steps() -> None:
    # lmtune max_steps 10 at the default batch 32 = 320 examples; the trial ran batch 8: 40 HF steps
    out = hf_training_arguments({"max_steps": 10, "batch_size": 8, "epochs": 2}, default_batch_size=32)
    assert out["max_steps"] == 40 and out["per_device_train_batch_size"] == 8
    assert hf_training_arguments({"max_steps": None, "batch_size": 8, "epochs": 3},
                                 default_batch_size=32)["num_train_epochs"] == 3
