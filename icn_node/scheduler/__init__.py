"""icn_node.scheduler: the pure scheduler core.

Resource matching (:mod:`.resources`), locality hints and context (:mod:`.locality`), placement
policies and offers (:mod:`.policy`), the submitter's ranking (:mod:`.ranking`) and cluster load
metrics (:mod:`.cluster_metrics`). Sans-IO: nothing here reads a clock, touches the network,
imports trio or draws random numbers except from a source the caller injects. Every value type
has ``to_dict(json_safe=False)`` and a validating ``from_dict``, derived by
:mod:`icn_node.codec`. See the Scheduling section of docs/ARCHITECTURE.md.
"""

from icn_node.scheduler.cluster_metrics import (
    AdaptiveLoadBalancer,
    ClusterMetrics,
    Ewma,
    MetricsSelector,
    NodeMetrics,
    WeightedRoutees,
)
from icn_node.scheduler.locality import (
    AvoidDid,
    BlobLocation,
    BlobRegistry,
    ColocateWith,
    DataLocality,
    LocalityContext,
    LocalityHint,
    MinimizeTransfer,
    PreferDid,
    PreferHighBandwidth,
    PreferLowLatency,
    PreferRegion,
    RequireRegion,
)
from icn_node.scheduler.policy import (
    MIN_TRUST_EXECUTE,
    WEIGHT_SETS,
    Decline,
    DeclineReason,
    DefaultPlacementPolicy,
    NodeState,
    PlacementOffer,
    PlacementPolicy,
    PlacementRequest,
    ScoreComponents,
    Weights,
)
from icn_node.scheduler.ranking import RankedOffer, Ranking, RejectedOffer, rank_offers
from icn_node.scheduler.resources import (
    ComputeCapability,
    GpuDevice,
    GpuSpec,
    NodeCapacity,
    Reservation,
    ResourceProfile,
)

__all__ = [
    "MIN_TRUST_EXECUTE",
    "WEIGHT_SETS",
    "AdaptiveLoadBalancer",
    "AvoidDid",
    "BlobLocation",
    "BlobRegistry",
    "ClusterMetrics",
    "ColocateWith",
    "ComputeCapability",
    "DataLocality",
    "Decline",
    "DeclineReason",
    "DefaultPlacementPolicy",
    "Ewma",
    "GpuDevice",
    "GpuSpec",
    "LocalityContext",
    "LocalityHint",
    "MetricsSelector",
    "MinimizeTransfer",
    "NodeCapacity",
    "NodeMetrics",
    "NodeState",
    "PlacementOffer",
    "PlacementPolicy",
    "PlacementRequest",
    "PreferDid",
    "PreferHighBandwidth",
    "PreferLowLatency",
    "PreferRegion",
    "RankedOffer",
    "Ranking",
    "RejectedOffer",
    "RequireRegion",
    "Reservation",
    "ResourceProfile",
    "ScoreComponents",
    "WeightedRoutees",
    "Weights",
    "rank_offers",
]
