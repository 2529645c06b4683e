"""Celery settings of the workers (``celery -A dagster_celery.app worker``), read from the same
environment variables the run's executor uses (``curation_assets/defs/shared/executors.py``).

dagster-celery's app imports a module of this name when it is on PYTHONPATH; unlike
``dagster-celery worker start -y``, this needs no DAGSTER_HOME on the worker.
"""

import os

broker_url = os.environ["DAGSTER_CELERY_BROKER_URL"]
result_backend = os.environ["DAGSTER_CELERY_BACKEND_URL"]
# one step at a time per worker process: a step is minutes of encoding or a GPU's batch
worker_prefetch_multiplier = 1
