"""Model registry: `build_model(name, num_classes, input_shape, seed=..., device=..., **options)`.

Importing this package registers every built-in model (see `list_models()`).
Conventions every model follows (other parts of prunelab rely on them):
  * only standard nn.Conv2d / nn.Linear / nn.BatchNorm2d hold weights;
  * the output layer is the last nn.Linear in `named_modules()` order, and modules are registered in
    forward order;
  * no in-place activations (double backward for Hessian-vector products must work);
  * `model.input_shape`, `model.num_classes` (and `model.model_name` via build_model) are set.
"""

from .registry import build_model, get_model_factory, list_models, model_options, register_model

# Imported for their @register_model side effects.
from . import convnets, mlp, resnet, vgg  # noqa: E402,F401  isort: skip

__all__ = ["build_model", "get_model_factory", "list_models", "model_options", "register_model"]
