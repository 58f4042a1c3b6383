"""The movierec TFX pipeline: factory, config, runners (local, Kubeflow V2) and the CLI."""
