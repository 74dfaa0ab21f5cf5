"""The VAE-GAN (networks, losses, train step) and the TFX Trainer's run_fn glue.

Model code (architecture, networks, losses, vaegan, input_data) knows nothing of TFX;
run_fn.py is the only module the TFX Trainer calls.
"""
