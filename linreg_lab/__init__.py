"""linreg_lab: how optimizers fit linear regression, run by Hydra and tracked in MLflow."""

__version__ = "0.1.0"
