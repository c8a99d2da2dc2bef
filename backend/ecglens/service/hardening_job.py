"""The hardening job: harden a registered model and register the result beside it (`run_hardening_job`, run by
`ecglens.service.jobs.run_hardening` for ``POST /api/v1/models/{name}/harden``). The recipe is `ecglens.hardening`; this
module adds what touches the service: the model registry, the blob store and the model folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecglens.classifiers.card import card_path_for
from ecglens.errors import ClassifierError
from ecglens.hardening import HardenConfig, harden, hardened_name
from ecglens.service.db import Model, utcnow


def run_hardening_job(
    runtime: Any,
    model_name: str,
    *,
    new_name: str | None = None,
    created_by: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    agent_windows: int | None = None,
    data_dir: str | Path | None = None,
    progress: Callable[[float], None] | None = None,
    soup: int | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Harden a registered model and register the result beside it (for ``POST /api/v1/models/{id}/harden``).

    The parent row is left as it is; the new model is a ``torchscript`` row named ``new_name`` whose file lives in
    ``runtime.settings.model_dir`` as ``{new_name}-{sha[:12]}.pt`` (bytes also in the blob store) with its card.

    Parameters
    ----------
    runtime : ecglens.service.runtime.Runtime
        Database, blobs and settings of the calling process.
    model_name : str
        Registry name of the parent (``builtin`` or an uploaded TorchScript model).
    new_name : str or None
        Registry name of the hardened model. Default: `ecglens.hardening.hardened_name`,
        ``"{model_name}-hardened-s{seed}"``.
    created_by : str or None
        API key id recorded on the new row. Default: None.
    seed, epochs, agent_windows : int
        Recipe overrides (`HardenConfig`). Defaults: 0, the recipe's, the recipe's.
    data_dir : str or Path or None
        MIT-BIH folder. Default: the shared data folder.
    progress : callable or None
        Called with the fraction done (e.g. a ``jobs.ProgressWriter``). Default: None.
    soup : int or None
        Fine-tunes averaged (`HardenConfig.soup`); 1 halves the fine-tuning time. Default: None (the recipe's, 2).
    job_id : str or None
        The hardening job this runs for, recorded in the card (``training.hardening_job``): when the job is run
        again after its worker stopped between registering the model and marking the job done, the model it
        registered is returned instead of an "already registered" error. Default: None.

    Returns
    -------
    dict
        ``{"name", "kind", "spec", "sha256", "parent", "card"}`` of the new row.

    Raises
    ------
    LookupError
        No model ``model_name``. ``ClassifierError``: it is not one we can fine-tune (ONNX, HTTP, frozen).
        ``ValueError``: ``new_name`` is taken.
    """
    new_name = new_name or hardened_name(model_name, seed)
    with runtime.sessions() as session:
        row = session.get(Model, model_name)
        if row is None:
            raise LookupError(f"model {model_name!r} is not registered")
        existing = session.get(Model, new_name)
        if existing is not None:
            if job_id and ((existing.card or {}).get("training") or {}).get("hardening_job") == job_id:
                return {
                    "name": existing.name,
                    "kind": existing.kind,
                    "spec": existing.spec,
                    "sha256": existing.sha256,
                    "parent": model_name,
                    "card": existing.card,
                }
            raise ValueError(f"model {new_name!r} is already registered")
        kind, spec = row.kind, row.spec
    if kind not in ("builtin", "torchscript"):
        raise ClassifierError(
            f"model {model_name!r} is {kind}: hardening fine-tunes weights, so it needs the "
            f"built-in model or a TorchScript upload"
        )
    config = HardenConfig(seed=seed)
    if epochs:
        config.epochs = int(epochs)
    if agent_windows is not None:
        config.agent_windows = int(agent_windows)
    if soup is not None:
        config.soup = max(1, int(soup))
    folder = Path(runtime.settings.model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{new_name}-{time.time_ns()}.pt"
    try:
        card = harden(spec, tmp, data_dir=data_dir, config=config, name=new_name, log=None, progress=progress)
        if job_id:
            card.training["hardening_job"] = job_id
        data = tmp.read_bytes()
        sha = runtime.blobs.put(data)
        path = folder / f"{new_name}-{sha[:12]}.pt"
        path.write_bytes(data)
        card.save(card_path_for(path))
    finally:
        tmp.unlink(missing_ok=True)
        card_path_for(tmp).unlink(missing_ok=True)
    new = Model(
        name=new_name,
        kind="torchscript",
        spec=str(path),
        card=card.to_dict(),
        sha256=sha,
        created_by=created_by,
        created_at=utcnow(),
    )
    with runtime.sessions() as session:
        session.add(new)
        session.commit()
    return {
        "name": new_name,
        "kind": "torchscript",
        "spec": str(path),
        "sha256": sha,
        "parent": model_name,
        "card": card.to_dict(),
    }
