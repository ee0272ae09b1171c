"""Compatibility module: the BTYD estimators' old home, now one module per model (tiering.models.bgnbd,
paretonbd, gammagamma, the fallbacks nbd and meanspend, and btyd_clv for discounted CLV).

Its names stay importable here because scoring bundles pickled before the split, registered in users' MLflow
stores, unpickle ``tiering.models.btyd.<Class>`` (BetaGeoModel, ParetoNBDModel, GammaGammaModel,
PooledNBDModel, MeanSpendModel). New code imports from the modules above, or from tiering.models.
"""

# Re-exported for bundles pickled under this path; see the docstring.
from tiering.models.bgnbd import BetaGeoModel
from tiering.models.btyd_clv import btyd_scores, discounted_clv
from tiering.models.gammagamma import GammaGammaModel
from tiering.models.meanspend import MeanSpendModel
from tiering.models.nbd import PooledNBDModel
from tiering.models.paretonbd import ParetoNBDModel

__all__ = ["BetaGeoModel", "ParetoNBDModel", "GammaGammaModel", "PooledNBDModel", "MeanSpendModel", "btyd_scores", "discounted_clv"]
