"""The ``moss-speech`` command line: LightningCLI for training, jsonargparse for everything else."""
