"""Training of the project's own nets: classifiers (:mod:`.classifier`) and DeePSim-style
generators (:mod:`.generator`, scored and exported by :mod:`.gen_eval`), on top of a resumable
:class:`~dgnam_jax.training.workdir.Workdir` and PIL-drawn curves (:mod:`.charts`).
"""

from dgnam_jax.training.charts import CLASSIFIER_PANELS, plot_curves
from dgnam_jax.training.workdir import (RUN_CONFIG_FILE, Workdir, check_run_config,
                                        device_description, step_events)

__all__ = ['CLASSIFIER_PANELS', 'RUN_CONFIG_FILE', 'Workdir', 'check_run_config',
           'device_description', 'plot_curves', 'step_events']
