"""Minimal shims that let FuxiCTR 2.3.10 import and preprocess on a current Python stack.

Import this module (and call ``install()``) *before* importing anything from ``fuxictr``::

    import sys
    sys.path.insert(0, "tools")
    from export import fuxictr_shims
    fuxictr_shims.install()
    from fuxictr.preprocess import FeatureProcessor

Two problems, two shims, nothing else touched:

1. ``ray``: ``fuxictr.preprocess`` (build_dataset.py) and ``fuxictr.pytorch.dataloaders``
   (parquet_dataloader.py) import ``ray`` / ``ray.data`` at module level, although only the
   parquet writing/loading paths use it. Where ``ray`` cannot be imported (no wheel for the
   interpreter, or not installed), a stub package is put in ``sys.modules`` that provides exactly
   the names imported at module level (``ray.is_initialized``, ``ray.init``,
   ``ray.data.SaveMode``, ``ray.data.TaskPoolStrategy``, ``ray.data.DataContext``,
   ``ray.data.datasource.filename_provider.FilenameProvider``); calling into it raises. Where the
   real ``ray`` imports, it is left alone. The model, the feature map and
   ``FeatureProcessor.fit``/``transform`` never call ray.
2. ``polars.scan_csv(dtypes=...)``: FuxiCTR's ``FeatureProcessor.read_data`` passes ``dtypes=``,
   which polars renamed to ``schema_overrides=`` (deprecated in 0.20.31, removed since 1.0).
   ``pl.scan_csv`` is wrapped to rename the keyword; every other argument goes through unchanged.

``install()`` is idempotent and returns a dict saying which shims were applied.
"""

import importlib
import sys
import types

__all__ = ["install"]

_STATE = {}


def _ray_stub():
    def _unavailable(*args, **kwargs):
        raise RuntimeError("ray is not installed: this is fuxictr_shims' import-only stub "
                           "(FuxiCTR's parquet build/load paths need the real ray)")

    class _Unavailable:
        def __init__(self, *args, **kwargs):
            _unavailable()

    class FilenameProvider:  # base class of build_dataset.SimpleFilenameProvider
        pass

    class SaveMode:
        OVERWRITE = "overwrite"
        APPEND = "append"
        IGNORE = "ignore"
        ERROR = "error"

    class DataContext:
        @staticmethod
        def get_current():
            _unavailable()

    ray = types.ModuleType("ray")
    ray.__fuxictr_shim__ = True
    ray.is_initialized = lambda: False
    ray.init = _unavailable
    data = types.ModuleType("ray.data")
    data.SaveMode = SaveMode
    data.TaskPoolStrategy = _Unavailable
    data.DataContext = DataContext
    data.from_arrow = _unavailable
    data.read_parquet = _unavailable
    data.Dataset = _Unavailable
    datasource = types.ModuleType("ray.data.datasource")
    filename_provider = types.ModuleType("ray.data.datasource.filename_provider")
    filename_provider.FilenameProvider = FilenameProvider
    datasource.filename_provider = filename_provider
    data.datasource = datasource
    ray.data = data
    return {
        "ray": ray,
        "ray.data": data,
        "ray.data.datasource": datasource,
        "ray.data.datasource.filename_provider": filename_provider,
    }


def _install_ray():
    try:
        importlib.import_module("ray.data.datasource.filename_provider")
        from ray.data import SaveMode, TaskPoolStrategy  # noqa: F401
        return False
    except Exception:
        for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
            del sys.modules[name]
        sys.modules.update(_ray_stub())
        return True


def _install_polars():
    import inspect

    import polars as pl

    if getattr(pl.scan_csv, "__fuxictr_shim__", False):
        return True
    if "dtypes" in inspect.signature(pl.scan_csv).parameters:
        return False
    original = pl.scan_csv

    def scan_csv(*args, dtypes=None, **kwargs):
        if dtypes is not None:
            if kwargs.get("schema_overrides") is not None:
                raise TypeError("scan_csv: give dtypes or schema_overrides, not both")
            kwargs["schema_overrides"] = dtypes
        return original(*args, **kwargs)

    scan_csv.__fuxictr_shim__ = True
    scan_csv.__wrapped__ = original
    scan_csv.__doc__ = original.__doc__
    pl.scan_csv = scan_csv  # feature_processor.py calls it as pl.scan_csv, looked up at call time
    return True


def install():
    """Apply the shims (once); returns {"ray_stub": bool, "polars_scan_csv_dtypes": bool}."""
    if not _STATE:
        _STATE["ray_stub"] = _install_ray()
        _STATE["polars_scan_csv_dtypes"] = _install_polars()
    return dict(_STATE)
