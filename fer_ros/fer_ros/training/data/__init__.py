"""Datasets for training and evaluation: layouts, sequences, subject-independent folds, augmentation and the
preprocessed-sample cache."""
