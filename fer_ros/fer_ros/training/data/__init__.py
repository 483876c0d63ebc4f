"""Datasets for training and evaluation: layouts and their readers (CK+, FER+, KDEF), several datasets joined into
one set of samples, subject-independent folds, each training draw's neutral reference, augmentation and the
preprocessed-image cache."""
