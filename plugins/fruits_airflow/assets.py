"""The run's outputs as Airflow Assets, for DAGs downstream (the classifier's training) to be scheduled on.

Their S3 locations are known only at run time (the bucket is the Variable's, the PCA is per run), so the
DAG declares two asset aliases as ``check_output``'s outlets, and the task attaches to each the asset it
resolves to, with the run's summary as the event's extra: a consumer schedules on
``AssetAlias("fruits_features")`` or ``AssetAlias("fruits_pca")`` and reads the summary from
``triggering_asset_events``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

from fruits_airflow.paths import RunPaths
from fruits_airflow.run_summary import event_extra

FEATURES_ALIAS = AssetAlias("fruits_features")
PCA_ALIAS = AssetAlias("fruits_pca")
OUTLETS = [FEATURES_ALIAS, PCA_ALIAS]


def asset(uri: str) -> Asset:
    """The Asset of an S3 prefix, named by its URI (without the trailing slash S3 prefixes have)."""
    uri = uri.rstrip("/")
    return Asset(name=uri, uri=uri)


def add_events(outlet_events: Any, paths: RunPaths, summary: dict[str, Any]) -> None:
    """An event on the features dataset and one on the run's PCA output, each carrying the run's summary."""
    extra = event_extra(summary)
    outlet_events[FEATURES_ALIAS].add(asset(paths.features_uri), extra=extra)
    outlet_events[PCA_ALIAS].add(asset(paths.pca_uri), extra=extra)
