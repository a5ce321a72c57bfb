"""pabee-deploy runtime: load a build and run early-exit predictions.

    import runtime
    session = runtime.load("build/")
    session.predict(["a charming film", "a dull film"])
"""

from runtime.policies import (
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    RegressionPatiencePolicy,
)
from runtime.session import Prediction, Session, load

__all__ = [
    "EntropyPolicy",
    "ExitPolicy",
    "FullDepthPolicy",
    "MaxProbPolicy",
    "PatiencePolicy",
    "Prediction",
    "RegressionPatiencePolicy",
    "Session",
    "load",
]
