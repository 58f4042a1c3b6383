"""The serving runtime of movierec: the HTTP server, the model store and the product logic.

It deploys alone: nothing here imports the training side (``pipeline``, ``components``,
``trainer``, ``publish``, TFX or ML-Metadata); what it shares with the exporter is
``serving.names``. ``publish`` builds and pushes the models this package serves.
"""
