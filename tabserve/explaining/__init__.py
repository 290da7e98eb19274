"""Why this answer: exact per-prediction contributions of each input feature (explainers.py: which method each
model family gets; treeshap.py: exact TreeSHAP in numpy; trees.py: scikit-learn's and XGBoost's trees as arrays)."""
