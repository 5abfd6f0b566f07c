"""adamflow.fileio: what it writes is valid JSON whatever NumPy hands it."""

import json

import numpy as np

from adamflow.fileio import atomic_write_json


def test_non_finite_numpy_scalars_are_written_as_strings(tmp_path):
    payload = {"inf": np.float64("inf"), "nan": np.float32("nan"), "x": [np.float64(1.5)]}
    path = atomic_write_json(tmp_path / "r.json", payload)

    def refuse(name: str) -> None:  # strict JSON has no Infinity or NaN
        raise ValueError(f"non-standard JSON constant {name}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data == {"inf": "inf", "nan": "nan", "x": [1.5]}
