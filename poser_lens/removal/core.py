"""The names of the former ``removal/core.py``, re-exported from the modules that now hold them.

Kept so that ``from poser_lens.removal.core import ...`` goes on working; new code imports from
:mod:`poser_lens.removal` or its modules.
"""

from __future__ import annotations

from poser_lens.removal.config import METHODS as METHODS
from poser_lens.removal.config import Method as Method
from poser_lens.removal.config import RemovalConfig as RemovalConfig
from poser_lens.removal.fanout import run_removal as run_removal
from poser_lens.removal.jobs import Job as Job
from poser_lens.removal.jobs import group_jobs as group_jobs
from poser_lens.removal.jobs import plan_jobs as plan_jobs
from poser_lens.removal.metrics import EvalSets as EvalSets
from poser_lens.removal.metrics import aligned_view as aligned_view
from poser_lens.removal.metrics import behaviour as behaviour
from poser_lens.removal.metrics import eval_sets as eval_sets
from poser_lens.removal.metrics import own_labels as own_labels
from poser_lens.removal.metrics import p_aligned as p_aligned
from poser_lens.removal.metrics import random_labels as random_labels
from poser_lens.removal.noise import TRAIN_NOISE_SEED as TRAIN_NOISE_SEED
from poser_lens.removal.noise import NoiseSpec as NoiseSpec
from poser_lens.removal.noise import noise_spec as noise_spec
from poser_lens.removal.remove import Prepared as Prepared
from poser_lens.removal.remove import family_contexts as family_contexts
from poser_lens.removal.remove import prepare as prepare
from poser_lens.removal.remove import remove_one as remove_one
from poser_lens.removal.remove import score_detectors as score_detectors
from poser_lens.removal.study import Study as Study
from poser_lens.removal.study import detectors_before as detectors_before
from poser_lens.removal.study import job_config as job_config
from poser_lens.removal.study import make_study as make_study
from poser_lens.removal.study import removal_dir as removal_dir
from poser_lens.removal.study import run_jobs as run_jobs
from poser_lens.removal.training import train_removal as train_removal
