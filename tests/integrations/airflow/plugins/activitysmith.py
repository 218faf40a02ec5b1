"""The listener plugin, installed as a user would: one line in the plugins folder."""

from activitysmith_track.airflow import plugin

# The DAGs tracked through callbacks are left to their callbacks.
ActivitySmithPlugin = plugin(dags=["nightly_etl", "failing_etl"])
