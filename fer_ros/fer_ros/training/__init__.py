"""Training: fer-train (`train.py`) and what it is made of. `data/` reads datasets, caches their landmarks and
crops, splits subject-independent folds and augments; `experimental/` holds the options the shipped recipe does
not use (sharpness-aware steps, weight averaging, mixup, the auxiliary blendshape head). Nothing here runs in the
node: the model it trains is exported (fer_ros.export) and read back through the manifest and the engine."""
