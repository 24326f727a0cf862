"""The transaction-sequence model: features, training, export and the ONNX scorer.

txmon's processes share a few CPU cores with Kafka, the worker and each other. OpenMP threads that
busy-wait between parallel regions then starve the other processes and each other (measured on the
2-core box under load: torch fine-tuning with 2 threads went from 163 to 1,100 rows/s with passive
waiting). libgomp reads the policy once, when torch loads, so it is set here, before any ``models``
module imports torch; an explicit ``OMP_WAIT_POLICY`` in the environment wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
