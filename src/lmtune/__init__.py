"""lmtune: hyperparameter optimization for language-model fine-tuning."""

__version__ = "0.1.0"
__all__ = ["__version__"]
