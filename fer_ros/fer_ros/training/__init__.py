"""Training: fer-train (`train.py`) and what it is made of. `data/` reads datasets (CK+, FER+, KDEF), caches their
landmarks and crops, joins several datasets into one set of samples, splits subject-independent folds, draws each
sample's neutral reference and augments. Nothing here runs in the node: the model it trains is exported
(fer_ros.export) and read back through the manifest and the engine."""
