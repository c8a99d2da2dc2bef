"""Public ECG datasets used to train and benchmark classifiers (read from ``../shared/data``, never copied)."""

from ecglens.datasets.mitdb import (
    AAMI_CLASSES,
    CLASS_NAMES,
    DS1,
    DS2,
    PACED,
    MitdbRecord,
    MitdbWindows,
    default_data_dir,
    load_record,
    load_windows,
)

__all__ = [
    "AAMI_CLASSES",
    "CLASS_NAMES",
    "DS1",
    "DS2",
    "PACED",
    "MitdbRecord",
    "MitdbWindows",
    "default_data_dir",
    "load_record",
    "load_windows",
]
