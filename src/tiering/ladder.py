"""The tier ladder's texts: labels, descriptions and recommended actions, with config overrides.

The tier names and their order are the vocabulary's (``tiering.schemas.TIERS``); this module adds
what operators read about each. Kept apart from the fitted policy (tiering.models.tiers) so that the
ops CLI and server can read the ladder without importing numpy, pandas or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiering.exceptions import ConfigError
from tiering.schemas import TIERS


@dataclass(frozen=True)
class Tier:
    name: str
    label: str
    description: str
    action: str


TIER_LADDER: tuple[Tier, ...] = (
    Tier(
        "core",
        "Core",
        "Paid, and very likely to buy again with high predicted value.",
        "VIP group, early access to launches, personal service by the account manager.",
    ),
    Tier(
        "value",
        "Value",
        "Pays for the product now: bought, and still likely to buy within the horizon.",
        "Repurchase coupon and replenishment reminders.",
    ),
    Tier(
        "seed",
        "Seed",
        "Spreads the word (KOC): shares and refers far more than other members, not paying now.",
        "Invite to the ambassador programme; referral rewards.",
    ),
    Tier("new", "New", "Joined recently.", "First-order incentive and a welcome journey."),
    Tier("ordinary", "Ordinary", "Everyone else.", "Content nurture in groups and moments."),
)
assert tuple(t.name for t in TIER_LADDER) == TIERS  # the texts follow the vocabulary's ladder
TIER_BY_NAME = {t.name: t for t in TIER_LADDER}
# a lapsed buyer (bought before, no longer likely to buy: ``lapsed_buyer``) gets this on top of its tier's action
WIN_BACK_ACTION = "Win-back: a personal reactivation offer on the products they bought before."
TIER_NAMES: tuple[str, ...] = TIERS  # highest first; the vocabulary's, kept under this name for its importers


def ladder(overrides=()) -> tuple[Tier, ...]:
    """The ladder with config overrides (``Config.tiers``: TierRule objects or dicts) applied.

    A rule names one of the five tiers and replaces any of label, description and action; fields
    left out keep the defaults. The order of the ladder (first match from the top) is fixed.
    """
    by_name = dict(TIER_BY_NAME)
    seen: set[str] = set()
    for rule in overrides or ():
        r = rule if isinstance(rule, dict) else rule.model_dump()
        name = r.get("tier")
        if name not in by_name:
            raise ConfigError(f"tiers: unknown tier {name!r}; the ladder is {list(TIER_NAMES)}. Fix the tiers section of the config.")
        if name in seen:
            raise ConfigError(f"tiers: tier {name!r} is listed twice; list each tier at most once in the tiers section of the config.")
        seen.add(name)
        t = by_name[name]
        by_name[name] = Tier(name, r.get("label") or t.label, r.get("description") or t.description, r.get("action") or t.action)
    return tuple(by_name[n] for n in TIER_NAMES)
