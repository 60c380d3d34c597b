"""Pick workers x threads x queue depth for a camera rate and a latency budget.

One idea per module, read in this order:
- `cost_model`: stage times -> predicted capacity and latency of each configuration, and the
  policy that picks one;
- `measurement`: the stage times (one session per thread count, several sessions at once) and
  the real pipeline fed at a camera rate;
- `validation`: the short list run through the pipeline, chosen again by what was measured;
- `tuner`: `autotune`, the sequence the node (at configure) and the benchmark command run.

ROS-free. The parameter-file writer is `core.param_file`, the glibc heap helper `core.memory`.
"""
from .cost_model import (Candidate, candidate_configs, Choice, choose, predict, ranked, StageTimes,
                         thread_candidates)
from .measurement import available_cores, measure_at_rate, measure_concurrent, measure_stages
from .tuner import autotune
from .validation import validate

__all__ = ['StageTimes', 'Candidate', 'Choice', 'predict', 'choose', 'candidate_configs',
           'ranked', 'measure_stages', 'measure_concurrent', 'measure_at_rate', 'validate',
           'autotune', 'available_cores', 'thread_candidates']
