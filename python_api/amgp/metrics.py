"""Click-prediction metrics on a test split: ROC AUC, log loss, accuracy (threshold 0.5)."""
import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def ctr_metrics(labels, probabilities):
    """{"auc", "logloss", "accuracy"} of predicted click probabilities against 0/1 labels
    (array-likes or tensors of the same length). AUC is NaN when only one class is present."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities must have the same length, got {y.size} and {p.size}")
    if y.size == 0:
        raise ValueError("labels must not be empty")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    p = np.clip(p, 1e-7, 1 - 1e-7)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else float("nan")
    return {
        "auc": auc,
        "logloss": float(log_loss(y, p, labels=[0.0, 1.0])),
        "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
    }
