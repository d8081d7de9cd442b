"""Analysis of trained runs: how much a feature h at each depth holds about the input x and the label y.

`infopro probe` (see `command.py`) restores runs (`restore.py`), extracts
frozen features at a depth (`features.py`, which defines depth), trains the
decoder and probe estimators on them (`estimators.py`, probe nets in
`probes.py`) and reports a table and a plot (`report.py`).
"""

from .command import add_probe_arguments, probe_main
from .estimators import Estimate, TrainSettings, estimate_i_hx, estimate_i_hy, fit
from .features import check_depths, default_depths, extract_features, parse_depths
from .probes import PROBES, build_probe
from .report import plot_probe, probe_table
from .restore import RestoredRun, checkpoint_path, open_run_data, read_run_config, restore_run, run_images

__all__ = [
    "Estimate", "PROBES", "RestoredRun", "TrainSettings", "add_probe_arguments", "build_probe",
    "check_depths", "checkpoint_path", "default_depths", "estimate_i_hx", "estimate_i_hy",
    "extract_features", "fit", "open_run_data", "parse_depths", "plot_probe", "probe_main",
    "probe_table", "read_run_config", "restore_run", "run_images",
]
