# Vendored copy of FuxiCTR's model_zoo DeepFM (PyTorch); see README.md for source and licence.
from .DeepFM import DeepFM  # noqa: F401
