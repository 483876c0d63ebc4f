"""The 3DAGN networks: appearance (3D CNN on LBP clips), geometric (VGG16-style, one 2-way decision per class
pair) and their fusion. Build models by name with `create_model`."""
from fer_ros.nets.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
