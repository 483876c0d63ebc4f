"""Training options the shipped recipe does not use, kept apart from it: sharpness-aware minimisation (`sam.py`,
--sam-rho), an exponential moving average of the weights (`ema.py`, --ema), mixup (`mixup.py`, --mixup) and the
training-only blendshape head (`auxiliary.py`, --aux-blendshapes). Each is off by default; none changes the
exported model's shape or inference."""
